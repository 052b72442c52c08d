"""The verdict's rows that cannot be read off one paired t interval: rates chosen on tuning seeds and
measured on others, rows labelled "not informative" (baseline at chance, best rate at a grid's edge,
one rate only) or "no records", the slope of loads to target against reuse, a metric at equal
communication rounds, the advisor's predicted interval, and intervals over seeds and test examples
from per-example records. Synthetic run directories in the real format (tests/test_verdict.py's
``write_run``), answers known by construction."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import yaml

from runner.report import cli as report_cli
from runner.records import FINAL_EXAMPLES, write_final_examples
from runner.report import stats

from .test_verdict import write_run


def verdict(tmp_path: Path, spec: dict, root: Path) -> dict:
    """{(id, condition): row} of the verdict CSV; the command must succeed (exit 0)."""
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    assert report_cli.main(["verdict", str(path), str(root), "--out", str(tmp_path / "v")]) == 0
    with open(tmp_path / "v.csv") as f:
        return {(r["id"], r["condition"]): r for r in csv.DictReader(f)}


def claim(cid: str, **kw) -> dict:
    return {"id": cid, "claim": cid, "figure": "f.png", "runs": "m", "quantity": "difference", "of": "test_acc",
            "method": "cosine", "holds_if": "> 0", **kw}


def test_rates_are_chosen_on_the_tuning_seeds_and_the_effect_measured_on_the_others(tmp_path):
    # cosine: on seeds 0 and 1, lr 0.1 is best (0.95 against 0.93 and 0.91); on seeds 2-4, lr 0.05 would
    # have been (0.99): a choice on every seed would pick it and measure its luck. sgd: 0.05 everywhere.
    m = tmp_path / "m"
    cos = {0.05: lambda s: 0.99 if s >= 2 else 0.93, 0.1: lambda s: 0.95 - 0.002 * s, 0.2: lambda s: 0.91}
    for s in range(5):
        for lr, f in cos.items():
            write_run(m / f"cos-{lr}-{s}", "cosine", seed=s, lr=lr, T=600, final=f(s))
        for lr, fin in ((0.025, 0.90), (0.05, 0.92 + 0.001 * s), (0.1, 0.91)):
            write_run(m / f"sgd-{lr}-{s}", "sgd", seed=s, lr=lr, T=600, final=fin)
    rows = verdict(tmp_path, {"tuning_seeds": [0, 1], "measuring_seeds": [2, 3, 4], "claims": [claim("T")]}, m.parent)
    r = rows["T", ""]
    assert (r["method_lr"], r["baseline_lr"], r["n"]) == ("0.1", "0.05", "3")
    d = [(0.95 - 0.002 * s) - (0.92 + 0.001 * s) for s in (2, 3, 4)]
    ci = scipy.stats.t.interval(0.95, 2, loc=np.mean(d), scale=scipy.stats.sem(d))
    assert [float(r[k]) for k in ("value", "lo", "hi")] == pytest.approx([np.mean(d), *ci], rel=1e-9)
    assert (r["tuning_seeds"], r["measuring_seeds"], r["verdict"]) == ("0, 1", "2, 3, 4", "holds")
    md = (tmp_path / "v.md").read_text()
    assert "rates chosen on seeds 0, 1, effect measured on seeds 2, 3, 4" in md


def test_rows_that_cannot_decide_say_not_informative_and_why(tmp_path):
    m = tmp_path / "m"
    for s in range(3):
        for lr in (0.025, 0.05, 0.1):  # cosine's best is 0.1, the grid's top edge
            write_run(m / f"cos-{lr}-{s}", "cosine", seed=s, lr=lr, T=600, final=0.9 + lr / 10)
        for lr in (0.025, 0.05, 0.1):  # sgd's best is 0.05, inside its grid
            write_run(m / f"sgd-{lr}-{s}", "sgd", seed=s, lr=lr, T=600, final=0.93 if lr == 0.05 else 0.92)
        write_run(m / f"linear-{s}", "linear", seed=s, lr=0.05, T=600, final=0.95)  # one rate only
        # A baseline at chance (digits: 10 classes, 0.1) and a method far above it.
        write_run(tmp_path / "c" / f"sgd-{s}", "sgd", seed=s, lr=0.05, T=None, final=0.101 + 0.002 * s)
        write_run(tmp_path / "c" / f"cos-{s}", "cosine", seed=s, lr=0.05, T=600, final=0.8)
    spec = {"claims": [claim("edge"), claim("one", method="linear"),
                       claim("chance", runs="c", lr="same"), claim("fine", method="sgd", baseline="sgd")]}
    rows = verdict(tmp_path, spec, tmp_path)
    assert rows["edge", ""]["verdict"] == ("not informative (cosine's best rate 0.1 is at the edge of its grid "
                                           "(0.025, 0.05, 0.1))")
    assert rows["one", ""]["verdict"] == "not informative (linear ran at one rate (0.05): not tuned)"
    assert rows["chance", "lr=0.05"]["verdict"] == ("not informative (sgd's test_acc 0.103 is within 0.05 of chance "
                                                    "(0.1))")
    assert float(rows["chance", "lr=0.05"]["value"]) == pytest.approx(0.8 - 0.103)  # measured all the same
    assert rows["fine", ""]["verdict"] == "inconclusive"  # sgd against itself: zero difference, zero width, n = 3
    md = (tmp_path / "v.md").read_text()
    assert "| not informative (linear ran at one rate (0.05): not tuned)" in md


def test_claims_without_their_runs_say_no_records_and_the_table_is_still_written(tmp_path):
    m = tmp_path / "m"
    for s in range(2):
        for lr in (0.025, 0.05, 0.1):
            write_run(m / f"sgd-{lr}-{s}", "sgd", seed=s, lr=lr, T=600, final=0.92)
            write_run(m / f"cos-{lr}-{s}", "cosine", seed=s, lr=lr, T=600, final=0.93 if lr == 0.05 else 0.92)
    spec = {"tuning_seeds": [0, 1], "measuring_seeds": [2, 3, 4],
            "claims": [claim("dir", runs="nowhere"), claim("method", method="adaptive"), claim("seeds"),
                       claim("where", runs={"where": {"comm.name": "on_load"}})]}
    rows = verdict(tmp_path, spec, tmp_path)
    assert {k[0]: r["verdict"] for k, r in rows.items()} == {"dir": "no records", "method": "no records",
                                                          "seeds": "no records", "where": "no records"}
    assert rows["dir", ""]["note"].startswith("no directory nowhere below")
    assert rows["method", ""]["note"].startswith("no run of 'adaptive'")
    assert rows["seeds", ""]["note"] == "no run of cosine at its best rate 0.05 with a measuring seed (2, 3, 4)"
    assert {r["claim_verdict"] for r in rows.values()} == {"no records"}


def test_the_linear_speed_up_is_a_slope_over_reuse_levels_at_each_target(tmp_path):
    # Loads to target T = T0 * (1/p)^b per seed, b = -0.9, -0.8, -0.95 (multiples of 200, so that the
    # target 0.9 is met at T and 0.5 at T / 2 exactly); the slope per seed is the least-squares slope
    # of log T on log(1/p), and SGD is the level 1/p = 1.
    b = {0: -0.9, 1: -0.8, 2: -0.95}
    T = {(s, r): 200 * round(4000 * r ** b[s] / 200) for s in b for r in (1, 2, 4)}
    for (s, r), t in T.items():
        sched = {"schedule.name": "none"} if r == 1 else {"schedule.name": "constant", "schedule.p": 1 / r}
        write_run(tmp_path / "speedup" / f"r{r}-{s}", "sgd", seed=s, T=t, final=0.93, end=4200, **sched)
    spec = {"claims": [claim("P1", runs="speedup", quantity="slope", of="example_loads", method="constant",
                             target=[0.5, 0.9], lr=0.05, holds_if="= -1 ± 0.25")]}
    rows = verdict(tmp_path, spec, tmp_path)
    x = np.log([1, 2, 4])
    slopes = [np.polyfit(x, np.log([T[s, r] for r in (1, 2, 4)]), 1)[0] for s in b]
    ci = scipy.stats.t.interval(0.95, 2, loc=np.mean(slopes), scale=scipy.stats.sem(slopes))
    for cond in ("target=0.5", "target=0.9"):
        r = rows["P1", cond]
        assert [float(r[k]) for k in ("value", "lo", "hi")] == pytest.approx([np.mean(slopes), *ci], rel=1e-9)
        assert r["note"] == "1/p = 1, 2, 4" and r["n"] == "3"
        # The interval (about -1.07 to -0.66) is neither inside -1 ± 0.25 nor outside it.
        assert r["verdict"] == "inconclusive"


def test_a_difference_at_equal_communication_rounds(tmp_path):
    # Two data-parallel methods over 2,000 loads: the baseline communicates twice per 100 loads, the
    # method once; at the method's final 20 rounds the baseline had loaded 1,000 examples, where its
    # accuracy is 0.1 + 0.8 * 1000 / 4000 = 0.3 (T = 4000: still rising linearly).
    for s in range(3):
        write_run(tmp_path / "dp" / f"a-{s}", "sgd", seed=s, world_size=2, T=4000, final=0.3 + 0.8 * 0.5,
                  steps_per_load=1 / 50)
        write_run(tmp_path / "dp" / f"b-{s}", "cosine+on_load", seed=s, world_size=2, T=4000, final=0.5 + 0.01 * s,
                  steps_per_load=1 / 100)
    spec = {"claims": [claim("R", runs="dp", method="cosine+on_load ×2", baseline="sgd ×2", at="comm_rounds",
                             lr="same")]}
    r = verdict(tmp_path, spec, tmp_path)["R", "lr=0.05"]
    d = [0.5 + 0.01 * s - 0.3 for s in range(3)]
    ci = scipy.stats.t.interval(0.95, 2, loc=np.mean(d), scale=scipy.stats.sem(d))
    assert [float(r[k]) for k in ("value", "lo", "hi")] == pytest.approx([np.mean(d), *ci], rel=1e-9)
    assert r["note"] == "at comm_rounds = 20" and r["verdict"] == "holds"


@pytest.mark.parametrize("predicted,want", [((1.0, 2.0), "holds"), ((1.6, 2.0), "does not hold"),
                                            ((1.3, 2.0), "inconclusive")])
def test_the_advisors_speed_up_against_its_predicted_interval(tmp_path, predicted, want):
    adv = tmp_path / "advisor"
    for s in range(3):
        write_run(adv / "confirm" / f"sgd-{s}", "sgd", seed=s)
    (adv / "confirm.json").write_text(json.dumps({
        "level": "p=0.5", "R": 4.0, "seeds": [0, 1, 2], "measured": {"value": 1.3, "lo": 1.1, "hi": 1.5},
        "predicted": {"value": 1.5, "lo": predicted[0], "hi": predicted[1]}}))
    spec = {"claims": [claim("V", runs="advisor/confirm", quantity="confirmed", of="wall_s", method="recommended",
                             holds_if="inside predicted")]}
    r = verdict(tmp_path, spec, tmp_path)["V", ""]
    assert [float(r[k]) for k in ("value", "lo", "hi")] == [1.3, 1.1, 1.5] and r["verdict"] == want


def test_intervals_count_the_test_examples_where_the_runs_keep_them(tmp_path):
    # Each run's per-example results beside its metrics (runner.records' final_examples.npz): the
    # method is right on the baseline's 15 misses more on every seed. The verdict's interval is the
    # two-level bootstrap of these arrays; a run without its file: over seeds only.
    rng = np.random.default_rng(0)
    base = (rng.random(2000) < 0.8)
    meth = base.copy()
    meth[np.flatnonzero(~base)[:15]] = True
    arrays = {}
    for s in range(3):
        for label, a in (("sgd", base), ("cosine", meth)):
            d = write_run(tmp_path / "m" / f"{label}-{s}", label, seed=s, T=600, final=float(a.mean()))
            write_final_examples(d, a, "classification")
            arrays[label, s] = a
    spec = {"claims": [claim("E", lr=0.05)]}
    r = verdict(tmp_path, spec, tmp_path)["E", ""]
    want = stats.two_level_bootstrap(np.stack([arrays["sgd", s] for s in range(3)]).astype(float),
                                     np.stack([arrays["cosine", s] for s in range(3)]).astype(float))
    assert r["basis"] == "seeds × test examples"
    assert [float(r[k]) for k in ("value", "lo", "hi")] == pytest.approx([15 / 2000, want.lo, want.hi], rel=1e-9)
    assert 0 < want.lo < 15 / 2000 < want.hi  # a width the seeds alone (all alike) would not give
    assert "interval over seeds × test examples" in (tmp_path / "v.md").read_text()
    (tmp_path / "m" / "sgd-1" / FINAL_EXAMPLES).unlink()
    r = verdict(tmp_path, spec, tmp_path)["E", ""]
    assert r["basis"] == "seeds only" and float(r["lo"]) == float(r["hi"]) == pytest.approx(15 / 2000)
