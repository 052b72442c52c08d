"""Shared fixtures: compose the real config (as the CLI does) and run it small, in-process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import DictConfig

from runner.config import compose

ROOT = Path(__file__).resolve().parent.parent
ECHO_RUN = [sys.executable, "-m", "runner.cli"]
# Fields measured on the wall clock; everything else in a record is deterministic.
WALL_FIELDS = {"wall_s", "eval_s", "real_idle_s"}

def make_cfg(*overrides: str) -> DictConfig:
    return compose(["logger.progress=false", "train.threads=1", *overrides])


def run_inproc(tmp: Path, *overrides: str) -> tuple[list, dict]:
    """Train in this process into ``tmp``; returns (records, summary)."""
    from runner.runs import claim
    from runner.train import run

    cfg = make_cfg(*overrides)
    claim(cfg, Path(tmp))
    summary = run(cfg, Path(tmp))
    return read_records(tmp), summary


def read_records(run_dir: Path) -> list:
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def without_wall(records: list) -> list:
    """Records less their wall-clock fields (idle_s is one too when no hardware profile simulates it)."""
    drop = lambda r: WALL_FIELDS | ({"idle_s"} if r.get("sim_s") is None else set())
    return [{k: v for k, v in r.items() if k not in drop(r)} for r in records]


def cli(*args: str, cwd: Path | None = None, timeout: int = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run echo-run as a subprocess (as a user would), with progress bars off."""
    e = dict(os.environ, **(env or {}))
    e.setdefault("OMP_NUM_THREADS", "1")
    return subprocess.run([*ECHO_RUN, "logger.progress=false", *args], cwd=cwd or ROOT, capture_output=True,
                          text=True, timeout=timeout, env=e)


@pytest.fixture
def small_digits() -> tuple:
    """Overrides for a digits run of a few seconds."""
    return ("budget.example_loads=960", "eval.every_loads=320")


def cli_inproc(*args: str) -> tuple[int, str]:
    """``echo-run ARGS`` in this process (the real ``runner.cli.main``, without an interpreter's start);
    returns (exit status, stderr)."""
    import contextlib
    import io

    from runner.cli import main

    err = io.StringIO()
    argv = sys.argv
    sys.argv = ["echo-run", "logger.progress=false", "train.threads=1", *args]
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            main()
        code = 0
    except SystemExit as e:
        code = e.code
    finally:
        sys.argv = argv
    return code, err.getvalue()
