"""Divergence for a real cause (a learning rate of 1e5 sends the loss to NaN within a few steps):
the run stops at the next record, records it, marks summary.json ``diverged`` and the command
exits 1; in a sweep the other jobs still run and the report lists the diverged one."""
from __future__ import annotations

import pytest

import json
import math
import subprocess

from runner.report import find_runs
from tests.conftest import ECHO_RUN, ROOT

TINY = ("logger.progress=false", "train.threads=1", "model.width=4", "data.max_test_examples=32",
        "budget.example_loads=640", "eval.every_loads=160")


def test_a_diverging_run_stops_records_and_exits_1(tmp_path):
    from tests.conftest import cli_inproc

    run = tmp_path / "run"
    code, err = cli_inproc(*TINY, "optim.lr=1e5", f"hydra.run.dir={run}")
    assert code == 1 and "ended diverged" in err and "Traceback" not in err
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["final"] == recs[-1]
    last = recs[-1]
    assert last["train_loss"] in ("nan", "inf", "-inf")  # JSON has no NaN: written as a string
    assert 0 < last["step"] and last["example_loads"] < 640  # it stopped early, at the step recorded
    assert all(isinstance(r["train_loss"], float) and math.isfinite(r["train_loss"]) for r in recs[1:-1])
    assert summary["target"]["reached"] is None
    # The same command again does not re-train a diverged run.
    before = (run / "metrics.jsonl").read_bytes()
    code, err = cli_inproc(*TINY, "optim.lr=1e5", f"hydra.run.dir={run}")
    assert code == 0 and "already holds this run, diverged; nothing to do" in err and (run / "metrics.jsonl").read_bytes() == before


@pytest.mark.slow
def test_a_sweep_with_a_diverging_job_finishes_the_others_and_exits_1(tmp_path):
    sweep = tmp_path / "sweep"
    p = subprocess.run([*ECHO_RUN, "-m", *TINY, f"hydra.sweep.dir={sweep}", "optim.lr=1e5,0.05"],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 1, p.stderr[-2000:]
    assert "Traceback" not in p.stderr and f"run in {sweep / '0'} ended diverged" in p.stderr
    status = {d.name: json.loads((d / "summary.json").read_text())["status"] for d in sweep.iterdir() if d.is_dir()}
    assert status == {"0": "diverged", "1": "complete"}
    done = [json.loads(line) for line in (sweep / "1" / "metrics.jsonl").read_text().splitlines()]
    assert done[-1]["example_loads"] >= 640 and done[-1]["test_acc"] > 0.2  # trained: well above chance (0.1)
    runs = {r.dir.name: r for r in find_runs([sweep])}
    assert runs["0"].status == "diverged" and runs["1"].status == "complete"
    assert math.isnan(runs["0"].final("test_acc")) and runs["1"].final("test_acc") == done[-1]["test_acc"]

