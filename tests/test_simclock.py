"""The simulated clock: R step-times per batch load -> R steps per fresh batch under adaptive echoing,
R step-times per fresh batch under plain SGD, deterministic sim_s, profiles that validate."""
from __future__ import annotations

from pathlib import Path

import pytest

from runner.config import CONF_DIR
from runner.schema import ConfigError
from runner.simclock import SimClock, from_config

from .conftest import make_cfg, run_inproc, without_wall


def adaptive_steps(clock: SimClock, steps: int) -> list:
    """Drive the clock as the loop does under echo=adaptive; returns the steps that loaded."""
    loads = []
    for t in range(steps):
        if t == 0 or clock.ready():
            clock.load()
            loads.append(t)
        clock.step()
    return loads


@pytest.mark.parametrize("R", [1, 2, 3, 4, 8, 16, 2.5])
def test_adaptive_takes_R_steps_per_fresh_batch(R):
    clock = SimClock(batch_load_s=R * 0.01, step_s=0.01, prefetch=2)
    loads = adaptive_steps(clock, 400)
    gaps = [b - a for a, b in zip(loads, loads[1:])]
    # Integer R: exactly R steps per batch; fractional R alternates between floor and ceil.
    assert min(gaps) >= int(R) and max(gaps) <= int(R) + (R != int(R))
    assert abs(400 / len(loads) - R) <= 1
    assert clock.idle_s == pytest.approx(R * 0.01)  # only the first batch is waited for


@pytest.mark.parametrize("R", [1, 2, 4, 8])
def test_plain_sgd_spends_R_step_times_per_fresh_batch(R):
    clock = SimClock(batch_load_s=R * 0.01, step_s=0.01, prefetch=2)
    n = 200
    for _ in range(n):
        clock.load()
        clock.step()
    # The first batch is loaded while the trainer waits, then one every R step-times; the last step
    # adds one step-time.
    assert clock.t == pytest.approx(n * R * 0.01 + 0.01)
    assert clock.idle_s == pytest.approx(clock.t - n * 0.01)


def test_fast_loader_is_bounded_by_prefetch_and_never_idles():
    clock = SimClock(batch_load_s=0.001, step_s=0.01, prefetch=3)
    for _ in range(50):
        clock.load()
        clock.step()
    assert clock.idle_s == pytest.approx(0.001)  # the first batch only
    assert clock.t == pytest.approx(0.001 + 50 * 0.01)
    # The pipeline never runs more than `prefetch` batches ahead of the trainer.
    assert clock._next_finish() - clock.t <= 0.001 + 1e-12


def test_state_dict_round_trip_continues_identically():
    a = SimClock(batch_load_s=0.03, step_s=0.01, prefetch=2, comm_latency_s=0.001, comm_bandwidth_Bps=1e6)
    adaptive_steps(a, 37)
    a.step(sequential=[1000])
    b = SimClock(batch_load_s=0.03, step_s=0.01, prefetch=2, comm_latency_s=0.001, comm_bandwidth_Bps=1e6)
    b.load_state_dict(a.state_dict())
    assert adaptive_steps(a, 50) == adaptive_steps(b, 50)
    assert (a.t, a.idle_s) == (b.t, b.idle_s)
    assert a.t > 0.5


PROFILES = sorted(p.stem for p in (Path(CONF_DIR) / "hardware").glob("*.yaml")
                  if p.stem not in ("none", "ratio", "measured"))


@pytest.mark.parametrize("name", PROFILES)
def test_a_profiles_loader_takes_longer_with_larger_batches_and_less_with_more_workers(name):
    """Each worker loads its examples one after another: a batch twice as large takes twice as long,
    twice the workers take half the time; the step time does not depend on either."""
    cfg = make_cfg(f"hardware={name}")
    small, large = from_config(cfg.hardware, 128), from_config(cfg.hardware, 256)
    assert large.batch_load_s == pytest.approx(2 * small.batch_load_s) and small.batch_load_s > 0
    more = from_config(make_cfg(f"hardware={name}", f"hardware.workers={2 * cfg.hardware.workers}").hardware, 256)
    assert more.batch_load_s == pytest.approx(large.batch_load_s / 2)
    assert small.step_s == large.step_s == more.step_s > 0


def test_ratio_overrides_a_profile_and_bad_values_are_refused():
    cfg = make_cfg("hardware=gpu_nvme", "hardware.ratio=8")
    assert from_config(cfg.hardware, 32).batch_load_s == pytest.approx(0.8)
    for bad in (["hardware.ratio=-1"], ["hardware.step_s=0"], ["hardware.ratio=null"]):
        with pytest.raises(ConfigError):
            make_cfg("hardware=ratio", *bad)


def test_runs_on_a_profile_follow_the_model_and_are_deterministic(tmp_path: Path):
    """End to end on digits: R = 4 step-times per batch."""
    common = ("hardware=ratio", "hardware.ratio=4", "eval.every_loads=320", "model.width=8")
    recs, _ = run_inproc(tmp_path / "a", "echo=adaptive", "budget.steps=80", *common)
    last = recs[-1]
    batches = last["example_loads"] / 32
    assert abs(last["step"] / batches - 4) <= 1
    assert last["idle_s"] == pytest.approx(0.04)  # the first batch only
    assert last["sim_s"] == pytest.approx(80 * 0.01 + 0.04)
    again, _ = run_inproc(tmp_path / "b", "echo=adaptive", "budget.steps=80", *common)
    assert without_wall(again) == without_wall(recs)  # sim_s, decisions and metrics identical

    sgd, _ = run_inproc(tmp_path / "c", "schedule=none", "budget.steps=40", *common)
    last = sgd[-1]
    batches = last["example_loads"] / 32
    assert batches == 40
    assert (last["sim_s"] - 0.01) / batches == pytest.approx(4 * 0.01)
    assert last["idle_s"] > 0.3  # waiting 3 step-times for each batch


def test_every_collective_call_costs_its_latency():
    """Item 8 of the core issue: one latency per call, not per round. Two calls of 500 bytes after
    the compute cost two latencies; one call of 1,000 bytes one."""
    lat, bw = 0.002, 1e6
    a, b = (SimClock(batch_load_s=0.0, step_s=0.01, comm_latency_s=lat, comm_bandwidth_Bps=bw) for _ in range(2))
    a.step(sequential=[500, 500])
    b.step(sequential=[1000])
    assert a.t == pytest.approx(0.01 + 2 * lat + 1000 / bw)
    assert b.t == pytest.approx(0.01 + lat + 1000 / bw)


@pytest.mark.parametrize("buckets, want", [([4000], 0.01), ([40_000], 0.002 + 0.04), ([20_000, 20_000], 0.044)])
def test_ddp_buckets_overlap_the_backward_pass(buckets, want):
    """DDP's bucket all-reduces run during the backward pass: a step costs the larger of the compute
    and those calls, not their sum; a call after the compute (the buffer average) adds."""
    c = SimClock(batch_load_s=0.0, step_s=0.01, comm_latency_s=0.002, comm_bandwidth_Bps=1e6)
    c.step(overlapped=buckets)
    assert c.t == pytest.approx(max(0.01, sum(0.002 + n / 1e6 for n in buckets)))
    assert c.t == pytest.approx(want)
    t0 = c.t
    c.step(overlapped=buckets, sequential=[8])
    assert c.t - t0 == pytest.approx(want + 0.002 + 8 / 1e6)
