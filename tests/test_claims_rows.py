"""scripts/claims.yaml against what the Makefile's figure targets run, read from `make -n` (the
commands make would run, at each SCALE): every claim's directory is swept, its method labels are what
the runner writes for one of those sweeps' configurations (runner.summary.method_label on the composed
config), each method's successive-halving stages together run the spec's tuning and measuring seeds
and name the method as the runner labels it, the figures choose with the same seeds, a claim between
tuned methods has a grid of at least 5 rates on both sides, and every figure a claim cites is drawn.
Then the spec on a results tree with nothing in it: every row says "no records", exit 0."""
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
    """[(sweep directory relative to FIG_RUNS, {key: [values]}, the --method the line's last halving
    stage names or None)] of every echo-run multirun. A stage after the first takes its rates from
    scripts/halving.py ($R): its optim.lr is not on the line."""
    lines, runs, _ = dry_run(scale)
    out = []
    for ln in lines:
        if "echo-run -m" not in ln:
            continue
        words = shlex.split(ln.split("||")[0])
        at = words.index("-m")
        # the --method of a halving stage that reads this sweep's own directory (not another's rate)
        named = [words[i + 1] for i in range(at) if words[i] == "--method"
                 and words[max(j for j in range(i) if words[j].endswith("halving.py")) + 1] == ln.split("hydra.sweep.dir=")[1].split()[0]]
        over = {}
        for w in words[at + 1:]:
            k, _, v = w.partition("=")
            if k.startswith("$"):
                continue
            over[k] = v.split(",") if not k.startswith("hydra.") else [v]
        out.append((str(Path(over["hydra.sweep.dir"][0]).relative_to(runs)), over, named[-1] if named else None))
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
    return {label_of(tuple(fixed + list(c))): over.get("optim.lr", []) for c in itertools.product(*swept)}


def produced(scale: str) -> dict:
    """{directory: {label: set of rates}} at this SCALE."""
    out: dict = {}
    for d, over, _ in sweeps(scale):
        top = d.split("/")[0]  # speedup/r4 -> speedup
        for lab, rates in labels(over).items():
            out.setdefault(top, {}).setdefault(lab, set()).update(rates)
    return out


def seeds_run(scale: str) -> dict:
    """{(directory, label): the seeds its stages run together}; and each halving stage's --method is
    the label of the runs it continues."""
    out: dict = {}
    for d, over, named in sweeps(scale):
        labs = labels(over)
        if named is not None:
            assert list(labs) == [named] or named in {lab.split(" ×")[0] for lab in labs}, (scale, d, named, labs)
        for lab in labs:
            out.setdefault((d, lab), set()).update(int(x) for x in over["seed"])
    return out


def claim_dirs(c: dict, made: dict, scale: str) -> list:
    runs = c["runs"] if isinstance(c["runs"], dict) else {"dir": c["runs"]}
    if runs.get("dir"):
        dirs = runs["dir"] if isinstance(runs["dir"], list) else [runs["dir"]]
        return [d.split("/")[0] for d in dirs]
    (key, want), = runs["where"].items()
    want = want if isinstance(want, list) else [want]
    assert key == "comm.name", c["id"]  # the only filter the spec uses; the sweeps name it comm=
    return [d for d, over, _ in sweeps(scale) if set(over.get("comm", [])) & set(want)]


@pytest.mark.parametrize("scale", ["small", "tiny", "paper"])
def test_every_claim_reads_runs_the_figure_targets_make(scale):
    lines, runs, fig_out = dry_run(scale)
    made = produced(scale)
    text = "\n".join(lines)
    tune, meas = SPEC["tuning_seeds"], SPEC["measuring_seeds"]
    for (d, lab), seeds in seeds_run(scale).items():
        # diloco_outer: the outer rate and momentum, chosen on the tuning seeds only
        want = set(tune) if d.startswith("diloco_outer") else set(tune) | set(meas)
        assert seeds == want, (scale, d, lab, seeds)
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
                assert len(have[lab]) >= 5, (scale, c["id"], lab, have[lab])


def test_the_spec_on_results_not_made_yet_says_no_records(tmp_path):
    (tmp_path / "results").mkdir()
    out = tmp_path / "verdict"
    assert report_cli.main(["verdict", str(ROOT / "scripts" / "claims.yaml"), str(tmp_path / "results"),
                            "--out", str(out)]) == 0
    with open(tmp_path / "verdict.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["id"] for r in rows] == [c["id"] for c in SPEC["claims"]]
    assert {r["verdict"] for r in rows} == {"no records"}
