"""echo-advise recommend: each echo level at its own learning rate, chosen by successive halving.

The rule (runner.advise.grid): every rate runs on the first seed to 1/3 of the budget (1/9 with 5 to 9
rates), the best third go on at 3x the budget, and the one rate left runs the full budget on every
seed. The counting test trains nothing: ``run_once`` is replaced by a run whose time to the target
is a known function of its rate, so that which runs are made, and which are stopped, is exact. The
digits test runs the real thing on the tiny grid of tests/test_advise.py.
"""
from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

from runner.advise import grid as G
from runner.advise.confirm import confirm
from tests.test_advise import DIGITS, advise

pytestmark = pytest.mark.filterwarnings("ignore:This DataLoader will create")


# ----------------------------------------------------------------- counting, on runs that do not train
BEST = {1.0: 0.1, 0.5: 0.05}  # the best rate of plain SGD (p = 1) and of p=0.5: half SGD's
FAKE = ["--ratios", "4", "--levels", "p=0.5", "--seeds", "0", "1", "--rates", "5", "--budget-fraction", "0.1"]


def fake_time(p: float, lr: float, seed: int, full: float) -> float:
    """Simulated seconds to the target: shortest at the level's best rate, 0.25 of the full budget
    longer per factor 2 away from it; p=0.5 is 20% faster than plain SGD, seed 1 5% slower."""
    d = abs(math.log2(lr / BEST[p]))
    return full * (0.2 + 0.25 * d) * (1.0 if p == 1.0 else 0.8) * (1 + 0.05 * seed)


def fake_run_once(full: float, made: list):
    """``runner.runs.run_once`` without training: six evaluations over the run's budget, test_acc
    = 0.9 t / T at time t (T from ``fake_time``), the run stopping at the first that reaches 0.9."""
    from runner.config import config_hash, resolved

    def run_once(cfg, run_dir):
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True)
        p = float(cfg.schedule.get("p", 1.0))
        T = fake_time(p, float(cfg.optim.lr), int(cfg.seed), full)
        recs, budget = [], float(cfg.budget.sim_s)
        for k in range(1, 7):
            t = budget * k / 6
            recs.append({"step": 10 * k, "example_loads": int(320 * k * p), "sim_s": t, "wall_s": t,
                         "test_acc": 0.9 * min(1.0, t / T)})
            if t >= T:
                break
        hit = recs[-1] if recs[-1]["test_acc"] >= 0.9 else None
        (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
        (run_dir / "summary.json").write_text(json.dumps({
            "status": "complete", "config_hash": config_hash(resolved(cfg)),
            "target": {"metric": "test_acc", "value": 0.9, "mode": "max", "reached": hit}}))
        made.append({"p": p, "lr": float(cfg.optim.lr), "seed": int(cfg.seed), "sim_s": budget,
                     "overrides": None, "dir": run_dir})
        return run_dir

    return run_once


def test_successive_halving_runs_and_stops_exactly_the_expected_runs(tmp_path, monkeypatch):
    import runner.runs

    full = G.column(DIGITS, ["hardware=ratio", "hardware.ratio=4"], 4, 0.1, 20)["sim_s"]
    made: list = []
    monkeypatch.setattr(runner.runs, "run_once", fake_run_once(full, made))
    out = tmp_path / "grid"
    # Stopped by --max-runs after plain SGD's two rungs (5 rates at 1/9 of the budget, then 2 at 1/3).
    code, _, err = advise("recommend", *DIGITS, *FAKE, "--max-runs", "7", "--out", str(out))
    assert code == 2 and "allowed 7 new runs in this call and 11 runs are still missing" in err, err[-2000:]
    assert "pilot: 18 runs" in err and "0 found done, 18 to run" in err
    code, stdout, err = advise("recommend", *DIGITS, *FAKE, "--out", str(out))
    assert code == 0, err[-2000:]
    assert "7 found done, 11 to run" in err and len(made) == 18  # none made twice
    # Per level: 5 rates on seed 0 at 1/9, the 2 best of them at 1/3, the best of those at all of it on both seeds.
    rungs = Counter((m["p"], m["lr"], m["seed"], round(m["sim_s"] / full, 6)) for m in made)
    ninth, third = round(1 / 9, 6), round(1 / 3, 6)
    expect = Counter()
    for p, kept, best in ((1.0, [0.1, 0.05], 0.1), (0.5, [0.05, 0.025], 0.05)):
        # At 1/9 nobody reaches the target: ranked by test_acc, then the rate nearest the workload's 0.05
        # (for p=0.5, 0.025 and 0.1 are as near: the smaller).
        expect.update({(p, lr, 0, ninth): 1 for lr in (0.0125, 0.025, 0.05, 0.1, 0.2)})
        expect.update({(p, lr, 0, third): 1 for lr in kept})
        expect.update({(p, best, s, 1.0): 1 for s in (0, 1)})
    assert rungs == expect
    g = json.loads((out / "grid.json").read_text())
    sgd, echo = g["trials"]["4|none"], g["trials"]["4|p=0.5"]
    assert sgd["tried"] == echo["tried"] == [0.0125, 0.025, 0.05, 0.1, 0.2]
    assert [r["kept"] for r in sgd["rungs"]] == [[0.1, 0.05], [0.1], [0.1]] and sgd["chosen"] == 0.1
    assert [r["kept"] for r in echo["rungs"]] == [[0.05, 0.025], [0.05], [0.05]] and echo["chosen"] == 0.05
    # The final cells are the chosen rates' full-budget runs; the speed-up is best against best.
    cells = g["cells"]
    assert {k: c["lr"] for k, c in cells.items()} == {"4|none|0": 0.1, "4|none|1": 0.1, "4|p=0.5|0": 0.05,
                                                      "4|p=0.5|1": 0.05}
    rec = g["recommendation"]["4"]
    ratios = [cells[f"4|none|{s}"]["sim_s"] / cells[f"4|p=0.5|{s}"]["sim_s"] for s in (0, 1)]
    assert rec["level"] == "p=0.5" and rec["speedup"]["value"] == pytest.approx(math.sqrt(ratios[0] * ratios[1]))
    assert "use p=0.5 (2 steps per fresh batch) at lr 0.05: predicted speed-up over plain SGD at its best lr 0.1" \
        in stdout
    md = (out / "advice.md").read_text()
    assert re.search(r"\| 4 +\| none +\| 0\.1 +\|", md) and re.search(r"\| 4 +\| p=0\.5 +\| 0\.05 +\|", md)
    # confirm trains each of the two at the rate the pilot chose for it.
    made.clear()
    res = confirm(g, DIGITS, out, seeds=[0, 1], log=lambda *a: None)
    assert sorted((m["p"], m["lr"], m["seed"]) for m in made) == [(0.5, 0.05, 0), (0.5, 0.05, 1), (1.0, 0.1, 0),
                                                                  (1.0, 0.1, 1)]
    assert {r["level"]: [o for o in r["overrides"] if o.startswith("optim.lr=")] for r in res["runs"]} == {
        "none": ["optim.lr=0.1"], "p=0.5": ["optim.lr=0.05"]}


def test_rates_and_rungs():
    assert G.rates_around(0.05, 3) == [0.025, 0.05, 0.1] and G.rates_around(0.05, 1) == [0.05]
    assert G.rates_around(0.05, 2) == [0.05, 0.1]
    for n in range(1, 28):
        r = G.rungs(n)
        assert r[0][0] == n and r[-1] == (1, 1.0)
        for (a, fa), (b, fb) in zip(r, r[1:]):  # each rung keeps the best third, at three times the budget
            assert b == math.ceil(a / 3) and fb == pytest.approx(3 * fa)
    assert G.rung_cost(3, seeds=3) == pytest.approx(4 / 3) and G.rung_cost(3, seeds=1) == pytest.approx(2)


def test_rates_rank_by_target_then_time_then_metric():
    def cell(sim_s=None, best=0.5, status="complete"):
        return {"sim_s": sim_s, "best": best, "status": status}

    by = {0.025: [cell(None, 0.89)], 0.05: [cell(2.0, 0.91)], 0.1: [cell(1.0, 0.9)], 0.2: [cell(None, 0.3, "diverged")]}
    assert G.rank_rates(by, "max", 0.05) == [0.1, 0.05, 0.025, 0.2]
    # Two seeds: a rate that reached the target on both beats one faster on one seed only.
    by = {0.05: [cell(2.0), cell(2.0)], 0.1: [cell(1.0), cell(None)]}
    assert G.rank_rates(by, "max", 0.1) == [0.05, 0.1]
    # A tie (same time, same metric) goes to the rate nearest the workload's, then to the smaller.
    by = {0.025: [cell(1.0)], 0.05: [cell(1.0)], 0.1: [cell(1.0)]}
    assert G.rank_rates(by, "max", 0.05) == [0.05, 0.025, 0.1]
    # mode=min (a loss): the lower best wins among runs that missed the target.
    assert G.rank_rates({0.05: [cell(None, 0.4)], 0.1: [cell(None, 0.3)]}, "min", 0.05) == [0.1, 0.05]


# ------------------------------------------------------------------------- the real thing, on digits
@pytest.mark.slow  # 8 short runs: about 6 s on an idle core
def test_each_level_at_its_own_rate_on_digits(tmp_path):
    """digits at R = 8, plain SGD and adaptive, one seed, the default 3 rates: per level 3 runs to 1/3 of
    the budget and one to all of it; the advice names the rates."""
    code, stdout, err = advise("recommend", *DIGITS, "--ratios", "8", "--levels", "adaptive", "--seeds", "0",
                               "--budget-fraction", "0.1", "--evals", "9", "--out", str(tmp_path))
    assert code == 0, err[-2000:]
    g = json.loads((tmp_path / "grid.json").read_text())
    full = g["columns"][0]["sim_s"]
    runs = {}
    for d in (tmp_path / "runs").iterdir():
        cfg = yaml.safe_load((d / ".hydra" / "config.yaml").read_text())
        runs.setdefault((cfg["echo"]["policy"], cfg["optim"]["lr"]), []).append(cfg["budget"]["sim_s"] / full)
    for level, policy in (("none", "stochastic"), ("adaptive", "adaptive")):
        t = g["trials"][f"8|{level}"]
        assert t["tried"] == [0.025, 0.05, 0.1] and t["chosen"] in t["tried"]
        assert t["rungs"][0]["kept"] == [t["chosen"]] and sorted(t["rungs"][0]["rates"]) == t["tried"]
        for lr in t["tried"]:  # 3 runs at 1/3; only the chosen rate's went on to the full budget
            want = [1 / 3, 1.0] if lr == t["chosen"] else [1 / 3]
            assert sorted(runs[policy, lr]) == pytest.approx(want)
        cell = g["cells"][f"8|{level}|0"]
        assert cell["lr"] == t["chosen"] and cell["final"] and cell["reached"]
        # The rung's order is the rule's, from its records.
        rung = {float(k): v for k, v in t["rungs"][0]["cells"].items()}
        assert t["rungs"][0]["rates"] == G.rank_rates(rung, "max", 0.05)
    assert len(runs) == 6 and sum(map(len, runs.values())) == 8
    rec = g["recommendation"]["8"]
    sgd, level = g["cells"]["8|none|0"], g["cells"][f"8|{rec['level']}|0"]
    assert rec["speedup"]["value"] == pytest.approx(sgd["sim_s"] / level["sim_s"])
    assert f"at lr {level['lr']:g}: predicted speed-up over plain SGD at its best lr {sgd['lr']:g}" in stdout
    md = (tmp_path / "advice.md").read_text()
    assert re.search(rf"\| 8 +\| none +\| {sgd['lr']:g} +\|", md) and "each level tried 0.025, 0.05, 0.1" in md
    assert (tmp_path / "heatmap.png").stat().st_size > 10_000
