"""scripts/claims.yaml, the project's verdict spec, evaluated end to end on a synthetic results tree
laid out as the Makefile's figure sweeps lay it out (speedup/, schedules/, augment/, data_parallel/,
dp_equal_steps/, diloco/, modern_cnn/, modern_lm/, advisor/), five seeds, three rates for every
method a claim tunes (the middle one best) and one rate for the others. Each
row's value and interval are checked against scipy on the seeds the spec says measure (2, 3, 4 for
tuned claims; every seed at a shared rate), so a claim that reads the wrong runs, seeds or rate fails
here rather than after hours of `make figures`."""
from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import yaml

from runner.report import cli as report_cli
from runner.report.verdict import load_spec

ROOT = Path(__file__).resolve().parent.parent
SPEC = load_spec(ROOT / "scripts" / "claims.yaml")
END, EVERY, SEEDS, RATES = 6400, 400, range(5), (0.025, 0.05, 0.1)
WORSE = {0.025: 1.5, 0.05: 1.0, 0.1: 1.25}  # loads to target at each rate, relative to the best (0.05)


def L(final, T, **kw) -> dict:
    """A method: final test accuracy and loads to the target 0.9 per seed, and its counters."""
    return dict(final=final, T=T, spl=kw.pop("spl", 1 / 64), wall=kw.pop("wall", 1e-3), sim=kw.pop("sim", 4e-3),
                ws=kw.pop("ws", 1), rpl=kw.pop("rpl", 0.0), **kw)


def seeds(a, step) -> list:
    return [round(a + step * s, 4) for s in SEEDS]


M = {  # (directory, label): its numbers; "p": the echo schedule's constant p (None: SGD)
    **{("speedup", lab): L(seeds(0.93, 0.001), [100 * round(4000 * (1 / p if p else 1) ** b / 100) for b in
                                                   (-0.9, -0.8, -0.95, -0.85, -1.0)], p=p, spl=(1 / p if p else 1) / 64,
                               wall=(1 / p if p else 1) * 1e-3, sim=4e-3 * (1 + 0.1 * (1 / p if p else 1)))
       for lab, p in (("sgd", None), ("constant(p=0.5)", 0.5), ("constant(p=0.25)", 0.25),
                      )},
    ("schedules", "sgd"): L(seeds(0.930, 0.002), [3000] * 5, aug=True),
    ("schedules", "cosine"): L(seeds(0.945, 0.001), [2000] * 5, sched="cosine", aug=True),
    ("schedules", "constant(p=0.5)"): L(seeds(0.951, 0.0), [2000] * 5, p=0.5, aug=True),
    ("schedules", "linear"): L([0.95, 0.94, 0.944, 0.946, 0.941], [2000] * 5, sched="linear", aug=True),
    ("schedules", "step"): L([0.94, 0.942, 0.946, 0.947, 0.944], [2000] * 5, sched="step", aug=True),
    ("augment", "constant(p=0.5)+reaug"): L([0.95, 0.955, 0.953, 0.956, 0.951], [2000] * 5, p=0.5, aug=True,
                                            reaug=True),
    ("data_parallel", "sgd+allreduce"): L(seeds(0.93, 0.001), [3200] * 5, ws=2, comm="allreduce", rpl=1 / 64),
    ("data_parallel", "sgd+periodic"): L(seeds(0.925, 0.001), [3400] * 5, ws=2, comm="periodic", rpl=1 / 256),
    ("data_parallel", "sgd+grad_accum"): L(seeds(0.90, 0.002), [4000] * 5, ws=2, comm="grad_accum", rpl=1 / 256),
    ("data_parallel", "constant(p=0.5)+allreduce"): L(seeds(0.94, 0.001), [3000] * 5, p=0.5, ws=2, comm="allreduce",
                                                     rpl=1 / 32, sim=6e-3),
    ("data_parallel", "constant(p=0.5)+on_load"): L(seeds(0.936, 0.002), [2000] * 5, p=0.5, ws=2, comm="on_load",
                                                   rpl=1 / 128),
    ("data_parallel", "constant(p=0.5)+probabilistic"): L([0.925, 0.945, 0.935, 0.93, 0.94], [2000] * 5, p=0.5, ws=2,
                                                         comm="probabilistic", rpl=1 / 128),
    ("dp_equal_steps", "sgd+allreduce"): L(seeds(0.93, 0.001), [3200] * 5, ws=2, comm="allreduce", rpl=1 / 64,
                                           steps=200),
    ("dp_equal_steps", "sgd+grad_accum"): L(seeds(0.925, 0.002), [4000] * 5, ws=2, comm="grad_accum", rpl=1 / 256,
                                            steps=800),
    ("diloco", "sgd+periodic+nesterov"): L(seeds(0.915, 0.001), [3400] * 5, ws=2, comm="periodic", rpl=1 / 256,
                                           outer=True),
    ("modern_cnn", "sgd"): L(seeds(0.70, 0.01), [5000] * 5, model="mobilenet"),
    ("modern_cnn", "constant(p=0.5)"): L(seeds(0.75, 0.005), [4000] * 5, p=0.5, model="mobilenet"),
    ("modern_lm", "sgd"): L(None, None, ppl=[180.0, 175.0, 178.0, 181.0, 176.0]),
    ("modern_lm", "constant(p=0.5)"): L(None, None, p=0.5, ppl=[150.0, 149.0, 156.0, 151.0, 152.0]),
}
def dirs_of(c: dict) -> list:
    d = c["runs"].get("dir") if isinstance(c["runs"], dict) else c["runs"]
    return d if isinstance(d, list) else [d]


TUNED = {(d, lab) for c in SPEC["claims"] if c.get("lr", "best") == "best" and c["quantity"] not in ("slope", "confirmed")
         for d in dirs_of(c) for lab in (c["method"], c.get("baseline", "sgd"))}
TUNED |= {("speedup", lab) for (d, lab) in M if d == "speedup"}


def rates(d: str, lab: str) -> tuple:
    return RATES if (d, lab) in TUNED else (0.05,)


def at(p: dict, lr: float, s: int) -> tuple:
    """(final metric, loads to target) of one run: a worse rate ends 0.02 lower (perplexity 20 higher)
    and takes WORSE[lr] times the loads."""
    worse = lr != 0.05
    if p.get("ppl"):
        return p["ppl"][s] + 20 * worse, None
    return p["final"][s] - 0.02 * worse, round(p["T"][s] * WORSE[lr])


def write(root: Path, d: str, lab: str, lr: float, s: int) -> None:
    p = M[d, lab]
    final, T = at(p, lr, s)
    lang = p.get("ppl") is not None
    recs = []
    for loads in range(0, END + 1, EVERY):
        step = round(loads * p["spl"])
        r = {"step": step, "example_loads": loads, "epoch": loads / 60000, "wall_s": loads * p["wall"],
             "sim_s": loads * p["sim"], "comm_rounds": loads * p["rpl"], "comm_bytes": loads * p["rpl"] * 1000,
             "world_size": p["ws"], "train_loss": 1.0}
        if lang:
            r["test_ppl"] = 1000.0 - (1000.0 - final) * loads / END
        else:
            r["test_acc"] = 0.1 + 0.8 * min(1.0, loads / T)
        recs.append(r)
    if not lang:
        recs[-1]["test_acc"] = final
    sched = ({"name": "constant", "p": p["p"]} if p.get("p") else {"name": p.get("sched", "none"), "p": 0.5})
    cfg = {"data": {"name": "python_docs" if lang else "fashion_mnist",
                    "task": "language" if lang else "classification", "batch_size": 64,
                    "augment": bool(p.get("aug")), "augment_on_echo": bool(p.get("reaug"))},
           "model": {"_target_": "runner.models.mobilenet_v3_small" if p.get("model") else "runner.models.SmallCNN"},
           "schedule": sched, "echo": {"policy": "stochastic"}, "optim": {"lr": lr},
           "budget": {"example_loads": None if p.get("steps") else END, "steps": p.get("steps")},
           "target": ({"metric": "test_ppl", "value": 100.0, "mode": "min"} if lang
                      else {"metric": "test_acc", "value": 0.9, "mode": "max"}),
           "hardware": {"name": "ratio", "ratio": 4.0}, "seed": s,
           "comm": {"name": p.get("comm", "none"), "outer_optim": "nesterov" if p.get("outer") else None},
           "launcher": {"name": "torchrun" if p["ws"] > 1 else "local", "nproc_per_node": p["ws"]}}
    run = root / d / f"{lab}-lr{lr}-s{s}"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (run / "summary.json").write_text(json.dumps({"status": "complete", "method": lab, "world_size": p["ws"]}))


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("results")
    for (d, lab) in M:
        for lr in rates(d, lab):
            for s in SEEDS:
                write(root, d, lab, lr, s)
    adv = root / "advisor"  # the advisor's confirmation: a run below it and its confirm.json
    shutil.copytree(root / "speedup" / "sgd-lr0.05-s0", adv / "confirm" / "run")
    (adv / "confirm.json").write_text(json.dumps({"level": "p=0.5", "R": 4.0, "seeds": [0, 1, 2],
                                                  "measured": {"value": 1.3, "lo": 1.1, "hi": 1.5},
                                                  "predicted": {"value": 1.4, "lo": 1.0, "hi": 1.8}}))
    return root


def loads_to(p: dict, lr: float, s: int, value: float) -> int:
    """The first record's loads at test_acc >= value (the records' grid of EVERY loads)."""
    T = at(p, lr, s)[1]
    return next(x for x in range(0, END + 1, EVERY) if 0.1 + 0.8 * min(1.0, x / T) >= value)


def clock(p: dict, of: str, loads: int) -> float:
    return {"example_loads": loads, "step": round(loads * p["spl"]), "wall_s": loads * p["wall"],
            "sim_s": loads * p["sim"]}[of]


def t_est(x) -> tuple:
    x = np.asarray(x, float)
    if np.ptp(x) == 0:
        return float(x[0]), float(x[0]), float(x[0])
    lo, hi = scipy.stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=scipy.stats.sem(x))
    return float(x.mean()), float(lo), float(hi)


def expected(c: dict, lr: float) -> tuple:
    """(value, lo, hi) of a claim's row at rate ``lr`` (the best 0.05, or the shared rate)."""
    d = c["runs"]["dir"] if isinstance(c["runs"], dict) and "dir" in c["runs"] else c["runs"]
    ss = list(SEEDS) if c.get("lr") == "same" else SPEC["measuring_seeds"]
    if c["quantity"] == "slope":
        levels = sorted((1 / M[k]["p"] if M[k].get("p") else 1.0, M[k]) for k in M if k[0] == "speedup")
        x = np.log([r for r, _ in levels])
        return t_est([np.polyfit(x, np.log([loads_to(p, 0.05, s, c["target"]) for _, p in levels]), 1)[0]
                      for s in ss])
    def side(lab: str) -> dict:  # a list of directories: the one that holds this label
        return M[d, lab] if isinstance(d, str) else next(M[k] for k in M if k[1] == lab and k[0] in d)

    m, b = side(c["method"]), side(c.get("baseline", "sgd"))
    if c["quantity"] == "speedup":
        lb = [math.log(clock(b, c["of"], loads_to(b, lr, s, 0.9)) / clock(m, c["of"], loads_to(m, lr, s, 0.9)))
              for s in ss]
        return tuple(math.exp(v) for v in t_est(lb))
    if c["quantity"] == "ratio":
        return tuple(math.exp(v) for v in t_est([math.log(at(b, lr, s)[0] / at(m, lr, s)[0]) for s in ss]))
    if c.get("at"):  # the baseline's accuracy where its rounds equal the method's final rounds
        loads = END * m["rpl"] / b["rpl"]
        return t_est([at(m, lr, s)[0] - (0.1 + 0.8 * min(1.0, loads / at(b, lr, s)[1])) for s in ss])
    return t_est([at(m, lr, s)[0] - at(b, lr, s)[0] for s in ss])


def verdict_of(c: dict, lo: float, hi: float) -> str:
    rule = str(c["holds_if"])
    if rule.startswith("="):
        x, tol = (float(v) for v in rule[1:].split("±"))
        return "holds" if x - tol <= lo and hi <= x + tol else (
            "does not hold" if hi < x - tol or lo > x + tol else "inconclusive")
    side, thr = rule.split()
    thr = float(thr)
    if lo == hi:
        return "holds" if (lo > thr) == (side == ">") and lo != thr else "does not hold"
    if (side == ">" and lo > thr) or (side == "<" and hi < thr):
        return "holds"
    return "does not hold" if (side == ">" and hi < thr) or (side == "<" and lo > thr) else "inconclusive"


def test_every_row_of_the_spec_is_the_known_answer(tree, tmp_path):
    assert report_cli.main(["verdict", str(ROOT / "scripts" / "claims.yaml"), str(tree),
                            "--out", str(tmp_path / "v")]) == 0
    with open(tmp_path / "v.csv") as f:
        rows = list(csv.DictReader(f))
    first = [r["id"] for r in rows if r["condition"] in ("", "lr=0.05", "target=0.8")]
    assert first == [c["id"] for c in SPEC["claims"]]
    seen = set()
    for r in rows:
        c = next(c for c in SPEC["claims"] if c["id"] == r["id"])
        if c["quantity"] == "confirmed":
            assert [float(r[k]) for k in ("value", "lo", "hi")] == [1.3, 1.1, 1.5] and r["verdict"] == "holds"
            continue
        lr = float(r["condition"].split("=")[1]) if r["condition"].startswith("lr=") else 0.05
        claim = dict(c, target=float(r["condition"].split("=")[1])) if c["quantity"] == "slope" else c
        want = expected(claim, lr)
        assert [float(r[k]) for k in ("value", "lo", "hi")] == pytest.approx(want, rel=1e-9), (r["id"], r["condition"])
        assert r["verdict"] == verdict_of(c, *want[1:]), (r["id"], r["condition"], r["verdict"])
        tuned = c.get("lr", "best") == "best" and c["quantity"] != "slope"
        assert r["n"] == ("3" if tuned or c["quantity"] == "slope" else "5"), r["id"]
        if tuned:
            assert (r["method_lr"], r["baseline_lr"]) == ("0.05", "0.05")
        seen.add(r["verdict"])
    assert {"holds", "does not hold", "inconclusive"} <= seen
    conds = {r["condition"] for r in rows if r["id"] == "P1.same"}
    assert conds == {"lr=0.025", "lr=0.05", "lr=0.1"}  # the same-rate claim at every rate of the grid
