"""scripts/claims.yaml against what the Makefile's figure targets run, read from `make -n` (the
commands make would run, at each SCALE): every claim's directory is swept, its method labels are what
the runner writes for one of those sweeps' configurations (runner.summary.method_label on the composed
config), every sweep runs the spec's tuning and measuring seeds and the figures choose with the same
ones, a claim between tuned methods has a grid of rates on both sides, and every figure a claim cites
is drawn. Then the spec on a results tree with nothing in it: every row says "no records", exit 0."""
from __future__ import annotations

import csv
import itertools
import shlex
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

import pytest

from runner.report import cli as report_cli
from runner.report.verdict import load_spec

ROOT = Path(__file__).resolve().parent.parent
SPEC = load_spec(ROOT / "scripts" / "claims.yaml")
FIGURES = ["fig-speedup", "fig-schedules", "fig-augment", "fig-dp", "fig-modern", "fig-advisor"]
LABEL_KEYS = ("schedule", "schedule.p", "comm", "data.augment_on_echo")  # the swept keys that name a method

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


@lru_cache(maxsize=None)
def dry_run(scale: str) -> tuple:
    """(lines of `make -n` for the figure targets, FIG_RUNS, FIG_OUT) at this SCALE."""
    out = subprocess.run(["make", "-n", "--no-print-directory", *FIGURES, f"SCALE={scale}"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    var = subprocess.run(["make", "-n", "--no-print-directory", "verdict", f"SCALE={scale}"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    words = shlex.split(next(ln for ln in var.splitlines() if "verdict scripts/claims.yaml" in ln))
    runs, out_stem = words[words.index("scripts/claims.yaml") + 1], words[words.index("--out") + 1]
    return out.splitlines(), runs, str(Path(out_stem).parent)


def sweeps(scale: str) -> list:
    """[(sweep directory relative to FIG_RUNS, {key: [values]})] of every echo-run multirun."""
    lines, runs, _ = dry_run(scale)
    out = []
    for ln in lines:
        if "echo-run -m" not in ln:
            continue
        words = shlex.split(ln.split("||")[0])
        over = {}
        for w in words[words.index("-m") + 1:]:
            k, _, v = w.partition("=")
            over[k] = v.split(",") if not k.startswith("hydra.") else [v]
        out.append((str(Path(over["hydra.sweep.dir"][0]).relative_to(runs)), over))
    return out


@lru_cache(maxsize=None)
def label_of(overrides: tuple) -> str:
    from runner import config
    from runner.summary import method_label

    return method_label(config.resolved(config.compose(list(overrides), check=False)))


def labels(over: dict) -> dict:
    """{method label: the sweep's rates} over the combinations of the label-naming keys."""
    # Only the keys a label depends on (echo, schedule, comm, augmentation; the data set where it is
    # augmented, as augmentation is its key): fewer configs to compose, shared between the scales.
    keys = ("echo", "schedule", "comm", "data.augment") + (("dataset",) if "data.augment" in over else ())
    fixed = [f"{k}={v[0]}" for k, v in over.items() if k.startswith(keys) and k not in LABEL_KEYS]
    swept = [[f"{k}={x}" for x in over[k]] for k in LABEL_KEYS if k in over]
    return {label_of(tuple(fixed + list(c))): over["optim.lr"] for c in itertools.product(*swept)}


def produced(scale: str) -> dict:
    """{directory: {label: set of rates}}, and every sweep's seeds, at this SCALE."""
    out: dict = {}
    for d, over in sweeps(scale):
        top = d.split("/")[0]  # speedup/r4 -> speedup
        for lab, rates in labels(over).items():
            out.setdefault(top, {}).setdefault(lab, set()).update(rates)
    return out


def claim_dirs(c: dict, made: dict, scale: str) -> list:
    runs = c["runs"] if isinstance(c["runs"], dict) else {"dir": c["runs"]}
    if runs.get("dir"):
        return [runs["dir"].split("/")[0]]
    (key, want), = runs["where"].items()
    want = want if isinstance(want, list) else [want]
    assert key == "comm.name", c["id"]  # the only filter the spec uses; the sweeps name it comm=
    return [d for d, over in sweeps(scale) if set(over.get("comm", [])) & set(want)]


@pytest.mark.parametrize("scale", ["small", "tiny", "paper"])
def test_every_claim_reads_runs_the_figure_targets_make(scale):
    lines, runs, fig_out = dry_run(scale)
    made = produced(scale)
    text = "\n".join(lines)
    tune, meas = SPEC["tuning_seeds"], SPEC["measuring_seeds"]
    for d, over in sweeps(scale):
        assert {int(s) for s in over["seed"]} >= set(tune) | set(meas), (scale, d, over["seed"])
    # The figures and stats choose with the spec's seeds.
    for ln in lines:
        if "at_best_lr.py" in ln or "echo-report stats" in ln:
            w = shlex.split(ln)
            assert (w[w.index("--tuning-seeds") + 1], w[w.index("--measuring-seeds") + 1]) == (
                ",".join(map(str, tune)), ",".join(map(str, meas))), ln
    for c in SPEC["claims"]:
        stem = Path(c["figure"]).stem
        assert f"{fig_out}/{stem}" in text, (scale, c["id"], c["figure"])  # --out STEM or the advisor's copy
        if c["quantity"] == "confirmed":
            confirm = [shlex.split(ln) for ln in lines if "echo-advise confirm" in ln]
            assert any(w[w.index("--out") + 1] == f"{runs}/{Path(c['runs']).parent}" for w in confirm), c["id"]
            continue
        dirs = claim_dirs(c, made, scale)
        assert dirs and all(d in made for d in dirs), (scale, c["id"], dirs)
        have = {lab: rates for d in dirs for lab, rates in made[d].items()}
        if c["quantity"] == "slope":
            assert sum(lab == "sgd" or lab.startswith("constant(p=") for lab in have) >= 3, (scale, c["id"])
            continue
        sides = [c["method"], c.get("baseline", SPEC.get("baseline", "sgd"))]
        for lab in sides:
            assert lab in have, (scale, c["id"], lab, sorted(have))
        if c.get("lr") == "same":
            assert have[sides[0]] & have[sides[1]], (scale, c["id"])  # a rate both ran
        elif c.get("lr", "best") == "best" and scale != "tiny":  # tiny is a quick look at 2 rates
            for lab in sides:
                assert len(have[lab]) >= 3, (scale, c["id"], lab, have[lab])


def test_the_spec_on_results_not_made_yet_says_no_records(tmp_path):
    (tmp_path / "results").mkdir()
    out = tmp_path / "verdict"
    assert report_cli.main(["verdict", str(ROOT / "scripts" / "claims.yaml"), str(tmp_path / "results"),
                            "--out", str(out)]) == 0
    with open(tmp_path / "verdict.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["id"] for r in rows] == [c["id"] for c in SPEC["claims"]]
    assert {r["verdict"] for r in rows} == {"no records"}
