"""scripts/bench_sweep.py: its successive-halving arithmetic, the estimate it derives from measured
costs, and exit status 2 (with the apt-get line) where Fashion-MNIST is missing."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_sweep", ROOT / "scripts" / "bench_sweep.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_successive_halving_runs_the_budget_fractions_it_documents(bench):
    # 5 rates: 2 stop at 1/4, 1 of the other 3 at 1/2, 2 run to the end: 0.5 + 0.5 + 2 budgets
    assert bench.halving_runs(5) == 3.0
    assert bench.halving_runs(6) == 3 * 0.25 + 1 * 0.5 + 2  # 6 -> 3 -> 2
    assert bench.halving_runs(1) == 1.0


def test_the_estimate_adds_up_the_grid(bench, monkeypatch):
    """One figure of one method (1 step per fresh batch): 4 rates x 1 tuning seed, halved (4 -> 2 -> 1),
    and the chosen rate on 2 measuring seeds, 2 epochs each, no evaluation during training."""
    grid = {"f": [([1], 4, 1, 2, 1, 2.0, 0)]}
    monkeypatch.setattr(bench, "DESIGNS", {"new": (grid, True, "new")})
    monkeypatch.setattr(bench, "steps_per_load", lambda *o: 1.0)
    m = {"eval_cpu_s_per_image": 0.001, "fixed": {"local": {"fixed_cpu_s": 5.0}, "torchrun x2": {"fixed_cpu_s": 9.0}}}
    model = {"intercept": 4.0, "slope_per_reuse": 6.0, "dp": 30.0}  # 10 CPU-s per epoch at 1 step per load
    budgets = 2 * 0.25 + 1 * 0.5 + 1 * 1.0 + 2 * 1  # tuning (halved) and measuring runs, in whole budgets
    launches = 4 + 2 + 1 + 2  # every run once, and a relaunch per stage survived (2 at 1/4, 1 at 1/2)
    finals = (4 + 2) * 10_000 * 0.001  # the whole test set at each run's end
    e = bench.estimate(m, model)["new"]
    assert e["runs"] == 6
    assert e["cpu_min"] == round((budgets * 2.0 * 10.0 + launches * 5.0 + finals) / 60, 1)


def test_missing_fashion_mnist_exits_2_with_the_apt_line(bench, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(bench, "FMNIST", tmp_path / "absent")
    with pytest.raises(SystemExit) as e:
        bench.main(["--out", str(tmp_path / "sweep.json")])
    assert e.value.code == 2 and "apt-get install dataset-fashion-mnist" in capsys.readouterr().err
    assert not (tmp_path / "sweep.json").exists()
