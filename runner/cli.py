"""The ``echo-run`` command: compose and validate the config, claim the run directory, train.

Exit status: 0 done; 1 a run diverged or failed; 2 bad input (nothing was changed); 143 stopped by
a signal after writing a checkpoint (re-run the same command to continue).
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

from . import runs
from .config import CONF_DIR
from .errors import ConfigError, Preempted
from .schema import validate

_state = {"started": False, "failed": [], "refused": []}


def fail(msg: str, code: int = 2) -> None:
    print(f"echo-run: error: {msg}", file=sys.stderr)
    sys.exit(code)


class RunDirCheck(Callback):
    """Refuses an output directory that cannot be created before Hydra tries to, so the user gets
    one sentence and exit status 2 instead of Hydra's traceback."""

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


def _remove_if_empty(run_dir: Path) -> None:
    try:
        if run_dir.exists() and not any(run_dir.iterdir()):
            run_dir.rmdir()
    except OSError:
        pass


@hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")
def app(cfg: DictConfig) -> None:
    _state["started"] = True
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    try:
        validate(cfg)
        how = runs.claim(cfg, run_dir, list(hc.overrides.task))
    except ConfigError as e:
        _remove_if_empty(run_dir)
        if not multirun:
            fail(str(e))
        # In a sweep one refused job must not stop the others; the process exits 2 at the end.
        print(f"echo-run: error: job {hc.job.num}: {e}", file=sys.stderr)
        _state["refused"].append(str(run_dir))
        return
    if how == "done":
        print(f"echo-run: {run_dir} already holds this run, complete; nothing to do.", file=sys.stderr)
        return
    try:
        summary = runs.start(cfg, run_dir)
    except ConfigError as e:
        if how == "new":
            runs.forget_new(run_dir)
        fail(str(e))
    except Preempted as e:
        fail(str(e), 143)
    if summary is not None and summary.get("status") != "complete":
        see = "see its summary.json" if (run_dir / "summary.json").exists() else "see the errors above"
        print(f"echo-run: run in {run_dir} ended {summary.get('status')}; {see}", file=sys.stderr)
        _state["failed"].append(str(run_dir))
    elif summary is not None:
        print(f"echo-run: records in {run_dir}")


def main() -> None:
    _state.update(started=False, failed=[], refused=[])  # main() may be called more than once (tests)
    try:
        app()
    except SystemExit as e:
        if e.code == 1 and not _state["started"]:
            # Hydra refused the command line (unknown key or option, wrong type) before any run began.
            print("echo-run: error: the command line was refused (see the reason above); "
                  "`echo-run --help` lists every group, option and value.", file=sys.stderr)
            sys.exit(2)
        raise
    if _state["refused"]:
        sys.exit(2)
    if _state["failed"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
