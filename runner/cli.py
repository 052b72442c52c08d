"""The ``echo-run`` command: compose and validate the config, claim the run directory, train.

Exit status: 0 done; 1 a run diverged or failed (an error in the user's own code: with its traceback);
2 bad input (nothing was changed); 143 stopped by a signal after writing a checkpoint (re-run the same
command to continue). A sweep (``-m``) runs every
job and exits with the first of 143, 2, 1 that a job ended with, whichever Hydra launcher ran them.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from . import jobs, runs
from .config import CONF_DIR, import_from_cwd
from .errors import ConfigError, Preempted
from .schema import check_overrides, validate

_state = {"started": False, "codes": []}  # exit statuses of the jobs run in this process


def fail(msg: str, code: int = 2) -> None:
    print(f"echo-run: error: {msg}", file=sys.stderr)
    sys.exit(code)


class RunDirCheck(Callback):
    """Refuses an output directory that cannot be created before Hydra tries to, so the user gets
    one sentence and exit status 2 instead of Hydra's traceback. Runs in the process that the user
    started (with the submitit launcher, the jobs run in other processes)."""

    def _check(self, d: str) -> None:
        try:
            Path(d).mkdir(parents=True, exist_ok=True)
            if not os.access(d, os.W_OK | os.X_OK):
                raise PermissionError(13, "permission denied")
        except OSError as e:
            fail(runs.unwritable(Path(d), e))

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        self._check(config.hydra.run.dir)

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self._check(config.hydra.sweep.dir)
        jobs.begin(config.hydra.sweep.dir)


def _remove_if_empty(run_dir: Path) -> None:
    try:
        if run_dir.exists() and not any(run_dir.iterdir()):
            run_dir.rmdir()
    except OSError:
        pass


def _say(line: str, stream=None) -> str:
    print(line, file=stream or sys.stderr)
    return line


def run_one(cfg: DictConfig, run_dir: Path, job: str = "") -> tuple:
    """One run (one job of a sweep, ``job`` = "job N: "): (exit status, the line it printed last).
    0 done, 1 diverged or failed, 2 refused (a new directory is left as it was), 143 stopped by a
    signal after writing a checkpoint."""
    try:
        validate(cfg)
        jobs.one_task()
        how = runs.claim(cfg, run_dir, list(HydraConfig.get().overrides.task))
    except ConfigError as e:
        _remove_if_empty(run_dir)
        return 2, _say(f"echo-run: error: {job}{e}")
    if how == "done":
        status = runs.status(run_dir)
        return 0, _say(f"echo-run: {run_dir} already holds this run, {status}; nothing to do.")
    try:
        summary = runs.start(cfg, run_dir)
    except ConfigError as e:
        if how == "new":
            runs.forget_new(run_dir)
        return 2, _say(f"echo-run: error: {job}{e}")
    except Preempted as e:
        return 143, _say(f"echo-run: error: {job}{e}")
    if summary is not None and summary.get("status") == "stopped":  # budget.stop_at: a stage, not a failure
        return 0, _say(f"echo-run: run in {run_dir} stopped at {summary.get('stopped_at_fraction'):.3g} of its "
                       "budget (budget.stop_at); the same command with a larger budget.stop_at, or without it, "
                       "continues it", sys.stdout)
    if summary is not None and summary.get("status") != "complete":
        see = "see its summary.json" if (run_dir / "summary.json").exists() else "see the errors above"
        return 1, _say(f"echo-run: run in {run_dir} ended {summary.get('status')}; {see}")
    if summary is not None:
        return 0, _say(f"echo-run: records in {run_dir}", sys.stdout)
    return 0, ""


@hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")
def app(cfg: DictConfig) -> None:
    _state["started"] = True
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    if hc.mode != RunMode.MULTIRUN:
        code, _ = run_one(cfg, run_dir)
        if code:
            sys.exit(code)
        return
    if not jobs.here():
        # Another process runs this job (the submitit launcher): the sweep's process learns its
        # outcome from the sweep directory, as this process's state never reaches it.
        jobs.note(hc.sweep.dir, hc.job.num, None)
        code, line = run_one(cfg, run_dir, f"job {hc.job.num}: ")
        jobs.note(hc.sweep.dir, hc.job.num, code, line, "stdout" if code == 0 else "stderr")
        return
    # In a sweep one refused or failed job must not stop the others; the process exits at the end.
    code, _ = run_one(cfg, run_dir, f"job {hc.job.num}: ")
    if code == 143:
        sys.exit(code)  # this very process was stopped: the sweep stops here, each run resumable
    _state["codes"].append(code)


def main() -> None:
    import_from_cwd()
    _state.update(started=False, codes=[])  # main() may be called more than once (tests)
    jobs.reset()
    from .advise.profile import missing_selected

    said = missing_selected(sys.argv[1:])  # hardware=measured before any measurement: one paragraph
    if said:
        fail(said)
    try:
        check_overrides(sys.argv[1:])  # a typo in a choice (echo.policy=...): one paragraph, before Hydra composes
    except ConfigError as e:
        fail(str(e))
    try:
        app()
    except SystemExit as e:
        if jobs.collect():
            _state["started"] = True
        if e.code == 1 and not _state["started"]:
            # Hydra refused the command line (unknown key or option, wrong type) before any run began.
            print("echo-run: error: the command line was refused (see the reason above); "
                  "`echo-run --help` lists every group, option and value.", file=sys.stderr)
            sys.exit(2)
        raise
    codes = set(_state["codes"]) | {o["code"] for o in jobs.collect()}
    for code in (143, 2, 1):  # the first that applies: continue, fix the input, look at the failed runs
        if code in codes:
            sys.exit(code)


if __name__ == "__main__":
    main()
