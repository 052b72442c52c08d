"""scripts/bench_sweep.py: the new design's successive-halving arithmetic, the estimate it derives from
measured costs, --measured (estimating again without training), the records of a results tree, and
exit status 2 (with the apt-get line) where Fashion-MNIST is missing."""
from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_sweep", ROOT / "scripts" / "bench_sweep.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def stages(rates: list, stop: float, keep: int, tune: list, measure: list) -> list:
    """The Makefile's three stages as (launch, seed, rate, budget from, budget to), the best rates
    taken as the first ones: seed tune[0] every rate to ``stop``; the ``keep`` first on every tuning
    seed to the end (tune[0] continues from ``stop``); the first on the measuring seeds."""
    out = [(f"s1 {r}", tune[0], r, 0.0, stop) for r in rates]
    out += [(f"s2 {r} {s}", s, r, stop if s == tune[0] else 0.0, 1.0) for r in rates[:keep] for s in tune]
    return out + [(f"s3 {s}", s, rates[0], 0.0, 1.0) for s in measure]


@pytest.mark.parametrize("rates", [5, 6])
def test_a_staged_method_runs_what_the_three_stages_run(bench, rates):
    segs = stages(list(range(rates)), 0.25, 2, [0], [1, 2, 3])
    p = bench.plan("staged", rates)
    assert p["budgets"] == sum(b - a for *_, a, b in segs)
    assert p["launches"] == len(segs)
    assert p["runs"] == len({(s, r) for _, s, r, *_ in segs})  # a continued run is one directory
    assert p["finals"] == sum(b == 1.0 for *_, b in segs)  # the runs stopped at a quarter end on eval.subset
    # to a target: the tuning seed's runs end in stage 1, so only the measuring seeds run after them
    assert bench.plan("target", rates)["launches"] == bench.plan("target", rates)["runs"] == rates + 3


def test_the_new_design_has_the_makefiles_runs(bench, monkeypatch):
    """Runs per figure directory: each tuned method its rates on the tuning seed + 3 (measuring seeds)."""
    monkeypatch.setattr(bench, "steps_per_load", lambda *o: 1.0)
    m = {"eval_cpu_s_per_image": 0.001, "fixed": {"local": {"fixed_cpu_s": 5.0}, "torchrun x2": {"fixed_cpu_s": 9.0}}}
    e = bench.estimate(m, {"intercept": 4.0, "slope_per_reuse": 6.0, "dp": 30.0})["new"]
    tuned = lambda rates: rates + 3  # noqa: E731
    assert e["runs_by_figure"] == {
        "speedup": 3 * tuned(6), "schedules": 5 * tuned(6), "augment": tuned(6), "data_parallel": 6 * tuned(5),
        "diloco_outer": 3 * 2, "diloco": tuned(5), "dp_equal_steps": 2 * tuned(5),
        "modern_cnn": 2 * tuned(5), "modern_lm": 2 * tuned(5)}


def test_the_estimate_adds_up_one_staged_method(bench, monkeypatch):
    """One method at 1 step per fresh batch: 4 rates, a budget of 1 epoch evaluated 4 times on 1,000
    images, the whole 10,000 at the end of the runs that end."""
    monkeypatch.setattr(bench, "NEW", {"f": [("cnn", 1, 4, 60_000, 15_000, 1_000, 10_000, "staged")]})
    monkeypatch.setattr(bench, "steps_per_load", lambda *o: 1.0)
    m = {"eval_cpu_s_per_image": 0.001, "fixed": {"local": {"fixed_cpu_s": 5.0}, "torchrun x2": {"fixed_cpu_s": 9.0}}}
    model = {"intercept": 4.0, "slope_per_reuse": 6.0, "dp": 30.0}  # 10 CPU-s per epoch at 1 step per load
    segs = stages([0, 1, 2, 3], 0.25, 2, [0], [1, 2, 3])
    budgets = sum(b - a for *_, a, b in segs)  # 4 x 1/4 + 2 x 3/4 + 3 = 5.5 epochs
    finals = sum(b == 1.0 for *_, b in segs)  # 5
    cpu = budgets * 10.0 + budgets * 4 * 1_000 * 0.001 + finals * 10_000 * 0.001 + len(segs) * 5.0
    e = bench.estimate(m, model)["new"]
    assert e["runs_by_figure"] == {"f": 4 + 3}
    assert e["cpu_min"] == round(cpu / 60, 1) == 2.9


def measured_block() -> dict:
    run = lambda r, cost: {"cpu_s": 10.0, "steps_per_fresh_batch": r, "train_cpu_s_per_epoch": cost,  # noqa: E731
                           "cpu_s_per_method_seed_epoch": cost + 1}
    return {"eval_cpu_s_per_image": 0.0002,
            "runs": {"sgd | eval new": run(1.0, 12.0), "constant(p=0.25) | eval new": run(3.7, 44.0),
                     "cosine | eval new": run(3.1, 39.0), "on_load x2 | eval new": run(1.9, 29.0)},
            "fixed": {"local": {"fixed_cpu_s": 6.0}, "torchrun x2": {"fixed_cpu_s": 12.0}}}


def test_measured_estimates_again_without_training(bench, monkeypatch, tmp_path):
    def no(*a, **k):
        raise AssertionError("--measured must not measure")
    monkeypatch.setattr(bench, "measure", no)
    monkeypatch.setattr(bench, "need_data", no)
    m = measured_block()
    (tmp_path / "earlier.json").write_text(json.dumps({"measured": m, "settings": {"steps": 500}}))
    args = ["--records", str(tmp_path / "absent")]
    assert bench.main(["--measured", str(tmp_path / "earlier.json"), "--out", str(tmp_path / "a.json"), *args]) == 0
    a = json.loads((tmp_path / "a.json").read_text())
    assert a["estimate"] == json.loads(json.dumps(bench.estimate(m, bench.cost_model(m))))
    assert a["measured"] == m and a["measured_with"]["settings"] == {"steps": 500}
    assert "runs" not in a["records"] and "absent" in a["records"]["note"]
    # its own output serves as --measured again: the same estimate
    assert bench.main(["--measured", str(tmp_path / "a.json"), "--out", str(tmp_path / "b.json"), *args]) == 0
    assert json.loads((tmp_path / "b.json").read_text())["estimate"] == a["estimate"]


def test_a_measured_file_without_measurements_exits_2(bench, tmp_path, capsys):
    (tmp_path / "bad.json").write_text(json.dumps({"estimate": {}}))
    with pytest.raises(SystemExit) as e:
        bench.main(["--measured", str(tmp_path / "bad.json"), "--out", str(tmp_path / "o.json")])
    assert e.value.code == 2 and "--measured" in capsys.readouterr().err
    assert not (tmp_path / "o.json").exists()


T0 = 1_700_000_000


def write_run(d: Path, recs: list, status: str | None, first_stop=None, stop_now=None, claimed=T0, ended=None,
              partial_line=False) -> None:
    """A run directory as echo-run leaves it: .hydra/ (the stored config, the first launch's
    overrides), metrics.jsonl, summary.json; file times set as a run at those times would."""
    h = d / ".hydra"
    h.mkdir(parents=True)
    OmegaConf.save(OmegaConf.create({"seed": 0, "budget": {"example_loads": 1000, "stop_at": stop_now}}),
                   h / "config.yaml")
    overrides = ["optim.lr=0.1", "seed=0"] + ([f"budget.stop_at={first_stop}"] if first_stop is not None else [])
    OmegaConf.save(OmegaConf.create(overrides), h / "overrides.yaml")
    if recs:
        text = "".join(json.dumps(r) + "\n" for r in recs) + ('{"step": 9, "wall' if partial_line else "")
        (d / "metrics.jsonl").write_text(text)
    if status:
        (d / "summary.json").write_text(json.dumps({"status": status}))
        os.utime(d / "summary.json", (ended, ended))
    os.utime(h / "overrides.yaml", (claimed, claimed))
    os.utime(h / "config.yaml", (claimed + (200 if stop_now != first_stop else 0),) * 2)  # replaced on continuing
    os.utime(h, (claimed + (200 if stop_now != first_stop else 0),) * 2)


def rec(wall, ev, world=1):
    return {"step": 1, "wall_s": wall, "eval_s": ev, "world_size": world}


def test_records_sum_each_runs_last_record_and_launches(bench, tmp_path):
    root = tmp_path / "small"
    # eval_s and wall_s are cumulative: only each run's last record counts
    write_run(root / "speedup" / "r1" / "lr=0.1,seed=0", [rec(0, 1), rec(20, 2), rec(50, 4)], "complete",
              ended=T0 + 100, partial_line=True)  # a live writer's half line is skipped
    write_run(root / "schedules" / "a", [rec(0, 1), rec(100, 8)], "complete", first_stop=0.25, stop_now=None,
              claimed=T0 - 60, ended=T0 + 540)  # stage 1 then continued: two launches
    write_run(root / "schedules" / "b", [rec(50, 4)], "stopped", first_stop=0.25, stop_now=0.25, ended=T0 + 30)
    write_run(root / "data_parallel" / "c", [rec(10, 1, 2), rec(40, 5, 2)], "complete", ended=T0 + 300)
    write_run(root / "diloco" / "d", [], None)  # claimed, not started: its launch only
    write_run(root / "advisor" / "e", [rec(1000, 10)], "complete", ended=T0 + 9_000)  # not a figure
    r = bench.records(root, measured_block())
    assert r["runs"] == 5 and r["launches"] == 6
    assert r["runs_by_status"] == {"complete": 3, "stopped": 1, "unfinished": 1}
    assert r["runs_by_figure"] == {"speedup": 1, "schedules": 2, "data_parallel": 1, "diloco": 1}
    # (train + eval) x world + launches x fixed (local 6, torchrun x2 12), in minutes
    assert r["cpu_min_by_figure"] == {"speedup": (50 + 4 + 6) / 60, "schedules": (108 + 2 * 6 + 54 + 6) / 60,
                                      "data_parallel": round(((40 + 5) * 2 + 12) / 60, 1), "diloco": 6 / 60}
    assert r["cpu_min"] == round((60 + 180 + 102 + 6) / 60, 1)
    # the first claim (schedules/a's overrides, before its .hydra was touched again) to the last summary
    assert r["elapsed_min"] == 10.0


def test_missing_fashion_mnist_exits_2_with_the_apt_line(bench, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(bench, "FMNIST", tmp_path / "absent")
    with pytest.raises(SystemExit) as e:
        bench.main(["--out", str(tmp_path / "sweep.json")])
    assert e.value.code == 2 and "apt-get install dataset-fashion-mnist" in capsys.readouterr().err
    assert not (tmp_path / "sweep.json").exists()
