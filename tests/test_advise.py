"""echo-advise: measure, recommend, confirm.

The timing tests run a workload whose costs are waits, not CPU work, so that they hold on a loaded
2-core machine: a data set whose reads sleep a fixed time per example (network storage: N workers
deliver N times faster) and a model whose training forward sleeps a fixed time (a simulated
accelerator). The grid tests run digits on assumed loader ratios (``--ratios``), where every number
but wall_s is deterministic.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import random
import time
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from runner.advise import cli, levels, profile, recommend
from runner.advise.confirm import verdict
from runner.advise.measure import time_pipeline, time_steps
from runner.data import Splits
from runner.metrics import read_jsonl

pytestmark = pytest.mark.filterwarnings("ignore:This DataLoader will create")


# ------------------------------------------------------------------------- a workload of waits
class SleepyReads(Dataset):
    """Fixed tensors behind storage that takes ``read_s`` per example to read (one batched read)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, read_s: float):
        self.x, self.y, self.read_s = x, y, read_s

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        time.sleep(self.read_s)
        return self.x[i], self.y[i]

    def __getitems__(self, idx):
        time.sleep(self.read_s * len(idx))
        return [(self.x[i], self.y[i]) for i in idx]


def sleepy_data(read_s: float = 0.0025, n_train: int = 512, n_test: int = 256, size: int = 4) -> Splits:
    """A learnable two-class problem (the sign of the mean pixel) read from slow storage; the test
    set is in memory (evaluation costs nothing)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n_train + n_test, 1, size, size, generator=g)
    y = (x.mean((1, 2, 3)) > 0).long()
    return Splits(SleepyReads(x[:n_train], y[:n_train], read_s), TensorDataset(x[n_train:], y[n_train:]),
                  "classification", {"num_classes": 2, "in_channels": 1, "image_size": size, "name": "sleepy"})


class SleepyNet(nn.Module):
    """A linear classifier on an accelerator that takes ``forward_s`` per training forward."""

    def __init__(self, in_channels: int = 1, image_size: int = 4, num_classes: int = 2, forward_s: float = 0.01):
        super().__init__()
        self.fc = nn.Linear(in_channels * image_size ** 2, num_classes)
        self.forward_s = forward_s

    def forward(self, x):
        if self.training:
            time.sleep(self.forward_s)
        return self.fc(x.flatten(1))


def broken_data(**kw) -> Splits:
    raise RuntimeError("the bucket s3://nowhere is not reachable")


class WrongShapeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(x)  # 1x8x8 digits flattened are 64 features: a shape error on the first batch


SLEEPY = ["data._target_=tests.test_advise.sleepy_data", "~data.test_fraction", "~data.split_seed",
          "model._target_=tests.test_advise.SleepyNet", "~model.width", "data.batch_size=8", "train.threads=1",
          "optim.lr=0.2", "target.value=0.8"]
FAST = ["--windows", "3", "--window-s", "0.1", "--steps", "10"]


def advise(*args: str) -> tuple:
    """``echo-advise ARGS`` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            cli.main(list(args))
            code = 0
        except SystemExit as e:
            code = e.code
    return code, out.getvalue(), err.getvalue()


def train(run_dir: Path, *overrides: str) -> list:
    """One echo-run run through runner.runs (as the advisor starts them); its records."""
    from runner.config import compose
    from runner.runs import run_once

    run_once(compose(["logger.progress=false", "checkpoint.enabled=false", *overrides]), run_dir)
    return read_jsonl(run_dir / "metrics.jsonl")


# ------------------------------------------------------------------ measure, on the workload of waits
@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """Profiles of three pipelines: 1 worker at 2.5 ms per example (a batch of 8 in 20 ms: R ~ 2 against a
    10 ms step), 4 workers at the same (R ~ 0.5), 1 worker at 0.6 ms per example (R ~ 0.5)."""
    d = tmp_path_factory.mktemp("profiles")
    found = {}
    for name, ov in (("w1", ["data.workers=1"]), ("w4", ["data.workers=4"]),
                     ("w1fast", ["data.workers=1", "+data.read_s=0.0006"])):
        code, out, err = advise("measure", *SLEEPY, *ov, "--name", name, "--profile-dir", str(d), *FAST)
        assert code == 0, err
        found[name] = (profile.load(name, str(d)), [*profile.searchpath(str(d)), f"hardware={name}"], ov, err)
    return found


def test_measure_writes_a_profile_that_runs_select(measured, tmp_path):
    p, hw, ov, err = measured["w1"]
    info = p["info"]
    B = 8
    # The simulated clock's batch load time is the measured one: batch * per-worker time / workers.
    assert B * p["load_s_per_example"] / p["workers"] == pytest.approx(info["batch_load_s"])
    assert info["batch_load_s"] == pytest.approx(B / info["pipeline"]["examples_per_s"]["median"])
    assert p["step_s"] == info["step_s"]["median"]
    assert info["R"]["value"] == pytest.approx(info["batch_load_s"] / p["step_s"])
    assert info["R"]["lo"] <= info["R"]["value"] <= info["R"]["hi"]
    # Three windows of the pipeline and of the loop beside it, ten steps alone.
    assert (info["pipeline"]["examples_per_s"]["n"], info["step_s"]["n"], info["step_alone_s"]["n"]) == (3, 3, 10)
    # The sleeps set a floor no machine can beat: a batch is 8 reads of 2.5 ms, a step a 10 ms forward.
    assert info["batch_load_s"] >= 0.02 and p["step_s"] >= 0.01 and info["step_alone_s"]["min"] >= 0.01
    assert info["pipeline"]["first_batch_s"] >= 0.02  # the worker starts, then reads its first batch
    # Beside a pipeline 2x slower than the step, the loop takes a fresh batch about every other step.
    assert 0 < info["loop_fresh_batches_per_s"]["median"] <= 1.1 / p["step_s"]
    assert info["machine"]["host"] and info["date"] and "SleepyNet" in info["workload"]
    assert info["overrides"] == [*SLEEPY, *ov] and info["task"] == "classification"
    assert p["prefetch"] == 2 + 1 * 2 and info["allreduce"] is None and p["comm_latency_s"] == 0.0
    assert "R = " in err and "wrote the profile" in err and "hardware=w1" in err
    # A run selects it as hardware=w1 (here through the search path of --profile-dir).
    from runner.config import compose

    cfg = compose([*SLEEPY, *ov, *hw])
    assert cfg.hardware.name == "w1" and cfg.hardware.step_s == p["step_s"] and cfg.hardware.info.task == "classification"


def test_another_workloads_profile_is_refused_by_runs_and_by_recommend(measured, tmp_path):
    """A profile stamped for 1 worker, selected for 4: echo-run refuses it at start-up (its times would
    make sim_s wrong) unless told to use them anyway; recommend refuses to measure over it."""
    from runner.config import compose
    from runner.errors import ConfigError

    p, hw, ov, _ = measured["w1"]
    with pytest.raises(ConfigError, match=r"hardware=w1 was measured for another workload .*1 workers.*4 workers"):
        compose([*SLEEPY, "data.workers=4", *hw])
    assert compose([*SLEEPY, "data.workers=4", *hw, "hardware.info=null"]).hardware.step_s == p["step_s"]
    # What does not change the timings may change: the echo level, the seed, the learning rate.
    assert compose([*SLEEPY, *ov, *hw, "echo=adaptive", "seed=3", "optim.lr=0.5"]).hardware.name == "w1"
    d = hw[0].split("file://")[1].rstrip("]")
    before = profile.path("w1", d).read_bytes()
    code, _, err = advise("recommend", *SLEEPY, "data.workers=4", "--name", "w1", "--profile-dir", d,
                          "--out", str(tmp_path))
    assert code == 2 and "was measured for another workload" in err and "--remeasure" in err
    assert profile.path("w1", d).read_bytes() == before and not any(tmp_path.iterdir())


@pytest.mark.serial
def test_more_workers_load_faster_by_their_number(measured):
    """Storage that waits per read: 4 workers deliver about 4 times what 1 does (not CPU-bound)."""
    one, four = (measured[k][0]["info"]["pipeline"]["examples_per_s"]["median"] for k in ("w1", "w4"))
    assert 3.0 <= four / one <= 4.2
    assert measured["w1"][0]["info"]["R"]["value"] > 1.2 > 0.8 > measured["w4"][0]["info"]["R"]["value"]


LOADS = {"w1": 1200, "w4": 800, "w1fast": 2000}  # 150 batches of ~21 ms, 100 and 250 steps of ~11 ms


@pytest.fixture(scope="module")
def trained(measured, tmp_path_factory):
    """Runs on the real pipeline under the measured profiles, made once: {(profile, level): records}. About
    3 s each (the start-up of the pipeline's worker, 0.05-0.2 s, is in wall_s and not in sim_s), evaluated
    every 10 fresh batches (on an in-memory test set: a few milliseconds, so that the pipeline hardly
    loads ahead while the loop evaluates)."""
    cache = {}

    def get(name: str, level: str) -> list:
        if (name, level) not in cache:
            _, hw, ov, _ = measured[name]
            cache[name, level] = train(tmp_path_factory.mktemp(name), *SLEEPY, *ov, *hw, level,
                                       "echo.ready_from=pipeline", "target.value=null",
                                       f"budget.example_loads={LOADS[name]}", "eval.every_loads=80")
        return cache[name, level]

    return get


@pytest.mark.serial
@pytest.mark.parametrize("name", ["w1", "w4"])
def test_time_per_fresh_step_is_the_slower_of_step_and_load(measured, trained, name):
    """Plain SGD behind the real pipeline: one worker makes loading the bottleneck, four do not. The time
    per fresh step, measured from the first record (after 10 batches: the workers' start-up is left out;
    measure reports it apart) to the end, is within 15% of max(step time, batch load time)."""
    p = measured[name][0]
    recs = trained(name, "schedule=none")
    a, b = recs[1], recs[-1]
    assert (a["example_loads"], b["example_loads"], b["step"]) == (80, LOADS[name], LOADS[name] // 8)
    per_fresh = (b["wall_s"] - a["wall_s"]) / ((b["example_loads"] - a["example_loads"]) / 8)
    expect = max(p["step_s"], p["info"]["batch_load_s"])
    assert per_fresh == pytest.approx(expect, rel=0.15), (per_fresh, p["step_s"], p["info"]["batch_load_s"])


@pytest.mark.serial
@pytest.mark.parametrize("name", ["w1", "w1fast"])
@pytest.mark.parametrize("level", ["schedule=none", "echo=adaptive"])
def test_simulated_clock_predicts_the_wall_clock(measured, trained, name, level):
    """hardware=<measured> on the real pipeline (adaptive asks the pipeline, not the clock): sim_s and
    wall_s agree within 15% at the end of training, at R ~ 2 and R ~ 0.5."""
    end = trained(name, level)[-1]
    assert end["example_loads"] == LOADS[name] and end["sim_s"] is not None
    assert end["sim_s"] == pytest.approx(end["wall_s"], rel=0.15), (end["sim_s"], end["wall_s"])
    if level == "echo=adaptive" and name == "w1":  # the pipeline is slower: adaptive echoes about R times
        assert end["step"] / (LOADS[name] / 8) == pytest.approx(measured[name][0]["info"]["R"]["value"], rel=0.25)


def test_the_pipeline_and_step_timers_on_a_fake_clock():
    """The arithmetic of time_pipeline and time_steps, with a clock that the code under test advances."""
    now = [0.0]

    class Source:
        def __next__(self):
            now[0] += 0.02  # a batch every 20 ms
            return ["batch"]

    r = time_pipeline(Source(), B=8, workers=2, depth=4, windows=3, window_s=0.1, clock=lambda: now[0])
    assert r["first"] == ["batch"] and r["first_batch_s"] == pytest.approx(0.02)
    assert r["warmup_batches"] == 5 and r["window_batches"] == 6  # whole rounds of 2 workers, >= 0.1 s
    assert r["examples_per_s"]["median"] == pytest.approx(400) and r["examples_per_s"]["n"] == 3
    steps = iter([0.01, 0.01, 0.01, 0.010, 0.012, 0.014])
    s = time_steps(lambda: now.__setitem__(0, now[0] + next(steps)), lambda: None, steps=3, warmup=3,
                   clock=lambda: now[0])
    assert (s["median"], s["min"], s["max"], s["n"]) == (pytest.approx(0.012), pytest.approx(0.010),
                                                         pytest.approx(0.014), 3)


def test_batches_loaded_during_an_evaluation_on_a_fake_clock():
    """Three batches wait after the evaluation (taken at once), the fourth has to be loaded."""
    from runner.advise.measure import loaded_while

    now, queue = [0.0], []

    class Source:
        background = True

        def ready(self):
            return bool(queue)

        def __next__(self):
            if queue:
                queue.pop()
            else:
                now[0] += 0.02  # loaded while the caller waits
            return ["batch"]

    queue += ["left over"] * 2

    def evaluate():
        queue.extend(["loaded meanwhile"] * 3)
        now[0] += 0.5
        return 0.5

    r = loaded_while(Source(), evaluate, batch_load_s=0.02, depth=4, clock=lambda: now[0])
    assert r == {"eval_s": 0.5, "batches": 3, "depth": 4}


def test_the_clocks_pause_term_never_exceeds_the_evaluation():
    """pause_s: the evaluation's length when the buffers filled up meanwhile; the batches that came at once
    times a load otherwise, but never more than the evaluation lasted (a 0.4 ms evaluation during which a
    batch already in flight arrived did not load 21 ms of data)."""
    from runner.advise.measure import clock_extras

    def pause(eval_s, batches, depth=4, loads=True):
        m = {"pipeline": {"first_batch_s": 0.05}, "eval_s": eval_s,
             "loaded_during_eval": {"eval_s": eval_s, "batches": batches, "depth": depth}}
        return clock_extras(m, batch_load_s=0.021, loads_while_paused=loads)["pause_s"]

    assert pause(0.3, 4) == 0.3  # full: any longer pause gives the same
    assert pause(0.3, 2) == pytest.approx(0.042)  # evaluation and loading shared the CPU
    assert pause(0.0004, 1) == 0.0004  # was 0.021
    assert pause(0.3, 2, loads=False) == 0.0  # a throttled pipeline pauses too


# --------------------------------------------------------------------------------- the monotone rule
def test_recommendation_is_monotone_for_any_grid():
    """Random times for random levels: the recommended echoing never goes down as R grows, and it is
    the fastest allowed level up to the tie tolerance, ties going to the least echoing."""
    rng = random.Random(0)
    for _ in range(300):
        Rs = sorted(rng.sample([0.5, 1, 1.5, 2, 3, 4, 6, 8, 16], rng.randint(2, 6)))
        amounts = {"none": 1.0, "p=0.5": 2.0, "e=2": 2.0, "p=0.25": 4.0, "cosine": 1.82, "p=0.125": 8.0}
        rows = {}
        for R in Rs:
            row = {lv: {"amount": a, "time": rng.choice([None, rng.uniform(1, 10)])} for lv, a in amounts.items()}
            row["adaptive"] = {"amount": max(R, 1.0), "time": rng.choice([None, rng.uniform(1, 10)])}
            rows[f"{R:.6g}"] = row
        rec = recommend.pick(rows, Rs, tolerance=0.05)
        floor = 0.0
        for R in Rs:
            r, row = rec[f"{R:.6g}"], rows[f"{R:.6g}"]
            allowed = {lv: c for lv, c in row.items() if c["time"] is not None and c["amount"] >= floor}
            if r["level"] is None:
                assert not allowed
                continue
            assert r["amount"] >= floor
            best = min(c["time"] for c in allowed.values())
            assert row[r["level"]]["time"] <= best * 1.05
            assert all(c["amount"] >= r["amount"] for lv, c in allowed.items() if c["time"] <= best * 1.05)
            floor = r["amount"]


def test_levels_and_their_amount_of_echoing():
    from runner.config import compose

    got = {}
    for name in ["none", "p=0.25", "cosine", "adaptive", "e=3"]:
        lv = levels.parse(name)
        got[name] = levels.amount(compose(["hardware=ratio", *lv.overrides]), R=2.5)
    assert got["none"] == 1 and got["p=0.25"] == pytest.approx(4) and got["e=3"] == 3 and got["adaptive"] == 2.5
    assert got["cosine"] == pytest.approx(2 / 1.1, rel=1e-4)  # 1 / mean of 0.1 + 0.9 (1 + cos pi u) / 2
    assert [lv.name for lv in levels.parse_all(["p=0.5,adaptive", "e=2", "none"])] == ["none", "p=0.5", "adaptive", "e=2"]
    for bad in ["p=0", "p=1.5", "e=0.5", "fast", "dataset=x"]:
        with pytest.raises(Exception, match="not an echo level"):
            levels.parse(bad)


def test_verdict_says_inside_or_by_how_much():
    pred = {"value": 1.5, "lo": 1.2, "hi": 1.8}
    assert verdict({"value": 1.3}, pred) == (True, "inside the predicted interval 1.20-1.80x")
    inside, how = verdict({"value": 1.08}, pred)
    assert inside is False and "below its lower end by 10%" in how
    inside, how = verdict({"value": 2.16}, pred)
    assert inside is False and "above its upper end by 20%" in how
    assert verdict({"value": 1.2}, {"value": 1.5, "lo": math.nan, "hi": math.nan})[1].startswith("-20% from")
    assert verdict({"value": math.nan, "note": "not reached by 1 of 2 seeds"}, pred)[0] is None


# --------------------------------------------------------------------------- the grid on digits
DIGITS = ["model.width=8", "train.threads=1", "target.value=0.9"]
GRID = ["--ratios", "1", "8", "--levels", "adaptive", "--seeds", "0", "--budget-fraction", "0.1", "--evals", "9"]


@pytest.fixture(scope="module")
def digits_grid(tmp_path_factory):
    """One grid at the workload's rate (--same-rate), made in two calls: stopped by --max-runs after one
    run, then finished."""
    out = tmp_path_factory.mktemp("grid")
    calls = [advise("recommend", *DIGITS, *GRID, "--same-rate", "--out", str(out), "--max-runs", "1")]
    calls.append(advise("recommend", *DIGITS, *GRID, "--same-rate", "--out", str(out)))
    return out, calls, json.loads((out / "grid.json").read_text())


def test_a_partial_grid_is_kept_and_continued(digits_grid):
    out, calls, grid = digits_grid
    code, _, err = calls[0]
    assert code == 2 and "--max-runs 1 allowed 1 new runs" in err and "3 runs are still missing" in err
    assert "pilot: 4 runs" in err and "0 found done, 4 to run, 1 in this call" in err
    assert "Traceback" not in err
    code, out2, err = calls[1]
    assert code == 0, err
    assert "1 found done, 3 to run" in err and "3 runs made, 1 found done" in err
    assert grid["complete"] and grid["ran"] == 3 and grid["reused"] == 1 and len(grid["cells"]) == 4
    first = json.loads(json.dumps(grid["cells"]))
    assert all(Path(c["dir"]).parent == out / "runs" for c in first.values())


def test_slower_loaders_get_more_echoing(digits_grid):
    out, calls, grid = digits_grid
    rec, rows = grid["recommendation"], grid["summary"]
    # R = 1: the pipeline is always ready, so adaptive is plain SGD step for step: a tie, won by none.
    assert rows["1"]["none"]["time"] == rows["1"]["adaptive"]["time"] is not None
    assert rec["1"]["level"] == "none" and rec["1"]["amount"] == 1
    assert rows["1"]["adaptive"]["steps_per_fresh"] == 1.0
    # R = 8: adaptive takes ~8 steps per fresh batch and reaches the target sooner in simulated time.
    assert rows["8"]["adaptive"]["steps_per_fresh"] == pytest.approx(8, rel=0.15)
    assert rec["8"]["level"] == "adaptive" and rec["8"]["amount"] == 8 > rec["1"]["amount"]
    sgd, ada = (grid["cells"][f"8|{lv}|0"]["sim_s"] for lv in ("none", "adaptive"))
    assert rec["8"]["speedup"]["value"] == pytest.approx(sgd / ada) and sgd / ada > 1
    assert math.isnan(rec["8"]["speedup"]["lo"]) and "one seed" in rec["8"]["speedup"]["note"]
    _, stdout, _ = calls[1]
    assert (f"at R = 8 use adaptive (8 steps per fresh batch) at lr 0.05: predicted speed-up over plain SGD (the same "
            f"lr, --same-rate) {sgd / ada:.2f}x") in stdout
    md = (out / "advice.md").read_text()
    first = {}  # the first Markdown row of each R (the recommendation's table; pandas pads the cells)
    for ln in md.splitlines():
        if ln.startswith("|"):
            first.setdefault(ln.split("|")[1].strip(), ln)
    assert "8" in first and "**adaptive**" not in first["1"]
    assert (out / "heatmap.png").stat().st_size > 10_000 and (out / "heatmap.pdf").exists()


def test_same_rate_mode_runs_every_level_at_the_workloads_rate_and_says_so(digits_grid):
    out, _, grid = digits_grid
    assert grid["same_rate"] and grid["rates"] == [0.05] and grid["rungs"] == [[1, 1.0]]
    rates = {yaml.safe_load((Path(c["dir"]) / ".hydra" / "config.yaml").read_text())["optim"]["lr"]
             for c in grid["cells"].values()}
    assert rates == {0.05} and len(list((out / "runs").iterdir())) == 4  # one run per level, R and seed
    assert all(t["tried"] == [0.05] and t["chosen"] == 0.05 for t in grid["trials"].values())
    assert "the workload's 0.05 for every level (--same-rate)" in (out / "advice.md").read_text()


def test_time_to_target_is_read_from_the_records(digits_grid):
    out, _, grid = digits_grid
    for c in grid["cells"].values():
        recs = read_jsonl(Path(c["dir"]) / "metrics.jsonl")
        hits = [r for r in recs if r["test_acc"] >= 0.9]
        assert hits, c["dir"]  # every cell reached 0.9 within the budget ...
        assert recs[-1] == hits[0]  # ... and stopped at the first record that did (target.stop)
        assert c["sim_s"] == hits[0]["sim_s"] and c["reached"]["step"] == hits[0]["step"]
        cfg = yaml.safe_load((Path(c["dir"]) / ".hydra" / "config.yaml").read_text())
        assert cfg["target"]["stop"] is True and cfg["budget"]["sim_s"] == pytest.approx(
            grid["columns"][[col["R"] for col in grid["columns"]].index(c["R"])]["sim_s"])


def test_budget_too_small_to_reach_the_target(tmp_path):
    args = ["recommend", *DIGITS, "--ratios", "2", "--levels", "adaptive", "--seeds", "0", "--budget-fraction",
            "0.005", "--out", str(tmp_path)]
    code, _, err = advise(*args)
    assert code == 2 and "pilot budget is too small to reach the target" in err and "--budget-fraction" in err
    assert "Traceback" not in err
    g = json.loads((tmp_path / "grid.json").read_text())
    # Stopped after plain SGD's full-budget run at its best rate (its 3 rate-search runs may miss the target): kept.
    assert not g["complete"] and list(g["cells"]) == ["2|none|0"] and g["cells"]["2|none|0"]["final"]
    assert g["trials"]["2|none"]["rungs"][0]["kept"] == [g["cells"]["2|none|0"]["lr"]]
    assert len(list((tmp_path / "runs").iterdir())) == 4
    code, _, err = advise(*args)
    assert code == 2 and "0 found done" not in err and "4 found done" in err  # read again, not re-run


@pytest.mark.parametrize("override, says", [
    ("target.value=1.5", "can never be reached: test_acc is always at most 1"),
    ("target.metric=test_ppl", "target.metric=test_ppl is never recorded"),
    ("schedule=cosine", "chooses the echo level"),
])
def test_unreachable_targets_are_refused_before_any_run(tmp_path, override, says):
    code, _, err = advise("recommend", *DIGITS, override, "--ratios", "2", "--out", str(tmp_path))
    assert code == 2 and says in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("override, what, says", [
    ("data._target_=tests.test_advise.broken_data", "building the data set", "the bucket"),
    ("model._target_=tests.test_advise.WrongShapeNet", "evaluating the model", "mat1 and mat2"),
])
def test_a_workload_that_does_not_start_raises_its_own_error(tmp_path, override, what, says):
    """An error in the user's own data set or model is not bad input: it keeps its type and traceback
    (exit 1), with a note saying which part of the workload raised it."""
    with pytest.raises(RuntimeError, match=says) as e:
        advise("measure", "train.threads=1", override, "~model.width", "--profile-dir", str(tmp_path), *FAST)
    assert f"echo-advise: {what} raised this error" in "".join(e.value.__notes__)
    assert not profile.path("measured", str(tmp_path)).exists()


def test_a_missing_profile_is_one_paragraph(tmp_path):
    code, _, err = advise("confirm", *DIGITS, "--name", "nowhere", "--profile-dir", str(tmp_path))
    assert code == 2 and "there is no measured hardware profile 'nowhere'" in err and "echo-advise measure" in err
    assert "\n" not in err.strip()
    # The same paragraph for echo-run's command line (runner.cli can print it before Hydra's own error).
    said = profile.missing_selected(["dataset=digits", "hardware=nowhere"])
    assert said.startswith("there is no measured hardware profile 'nowhere'") and "conf/hardware/nowhere.yaml" in said
    assert profile.missing_selected(["hardware=gpu_nvme"]) is None
    assert profile.missing_selected(["hydra.searchpath=[file:///x]", "hardware=nowhere"]) is None


# ------------------------------------------------------------------- the whole chain, for real
def test_recommend_then_confirm_on_the_real_pipeline(measured, tmp_path):
    """The chain on the workload of waits at R ~ 2: the pilot on the measured profile, then plain SGD and
    the recommendation trained for real; the confirmation's numbers are those of its runs' records."""
    p, hw, ov, _ = measured["w1"]
    d = str(Path(hw[0].split("file://")[1].rstrip("]")))
    # A small learning rate, the same for both levels: echo steps are then nearly as good as fresh ones, and
    # echoing pays (the rate search is tested on digits, tests/test_advise_rates.py).
    args = [*SLEEPY, *ov, "optim.lr=0.01", "target.value=0.85", "budget.example_loads=480", "--name", "w1",
            "--profile-dir", d, "--levels", "adaptive", "--seeds", "0", "1", "--budget-fraction", "1", "--evals", "30",
            "--same-rate", "--out", str(tmp_path)]
    code, out, err = advise("recommend", *args, "--confirm")
    assert code == 0, err
    assert "using the profile" in err  # measured once, in the fixture: not again
    g = json.loads((tmp_path / "grid.json").read_text())
    R = g["columns"][0]["R"]
    assert R == pytest.approx(p["info"]["R"]["value"], rel=1e-6) and g["mode"] == "measured"
    c = json.loads((tmp_path / "confirm.json").read_text())
    rec = g["recommendation"][f"{R:.6g}"]
    assert c["level"] == rec["level"] and c["predicted"] == rec["speedup"]
    runs = {(r["level"], r["seed"]): r for r in c["runs"]}
    assert set(runs) == {(lv, s) for lv in ("none", c["level"]) for s in (0, 1)}, err[-3000:]
    for r in runs.values():
        cfg = yaml.safe_load((Path(r["dir"]) / ".hydra" / "config.yaml").read_text())
        assert cfg["echo"]["ready_from"] == "pipeline" and cfg["hardware"]["name"] == "w1"
        assert r["reached"] is not None and r["end"]["sim_s"] is not None
    assert c["level"] == "adaptive" and rec["speedup"]["value"] > 1.05  # the clock says echoing pays at R ~ 2
    ratios = [runs[("none", s)]["reached"]["wall_s"] / runs[("adaptive", s)]["reached"]["wall_s"] for s in (0, 1)]
    assert c["measured"]["value"] == pytest.approx(math.sqrt(ratios[0] * ratios[1]))
    assert c["inside"] == (c["predicted"]["lo"] <= c["measured"]["value"] <= c["predicted"]["hi"])
    assert c["line"] in out and ("inside the predicted interval" in out or "NOT inside" in out)
    md = (tmp_path / "confirm.md").read_text()
    assert all(Path(r["dir"]).name in md for r in c["runs"]) and "measured speed-up" in md


@pytest.mark.slow
def test_measure_times_the_all_reduce_under_torchrun(tmp_path):
    code, _, err = advise("measure", "launcher=torchrun", "launcher.nproc_per_node=2", "comm=allreduce",
                          "train.threads=1", "model.width=8", "--profile-dir", str(tmp_path), "--windows", "2",
                          "--window-s", "0.05", "--steps", "3")
    assert code == 0, err
    p = profile.load("measured", str(tmp_path))
    a = p["info"]["allreduce"]
    from runner.config import compose
    from runner.models import build
    from runner.data import build as data_build

    cfg = compose(["model.width=8"])
    model = build(cfg.model, data_build(cfg.data).info)
    assert a["bytes"] == sum(t.numel() * 4 for t in model.parameters())
    assert (a["world"], a["backend"], a["big_s"]["n"], a["tiny_s"]["n"]) == (2, "gloo", 20, 20)
    assert p["comm_latency_s"] == a["tiny_s"]["median"] > 0
    assert p["comm_bandwidth_Bps"] == pytest.approx(a["bytes"] / (a["big_s"]["median"] - a["tiny_s"]["median"]))
    assert "all-reduce on 2 ranks (gloo)" in err
