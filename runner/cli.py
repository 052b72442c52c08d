"""The ``echo-run`` command: compose and validate the config, claim the run directory, train.

Exit status: 0 done; 1 a run diverged or failed; 2 bad input (nothing was changed); 143 stopped by
a signal after writing a checkpoint (re-run the same command to continue).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from hydra.experimental.callback import Callback
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from .schema import ConfigError, register, validate
from .summary import config_hash

register()
_state = {"started": False, "failed": [], "refused": []}


def fail(msg: str, code: int = 2) -> None:
    print(f"echo-run: error: {msg}", file=sys.stderr)
    sys.exit(code)


def claim_run_dir(cfg: DictConfig, run_dir: Path) -> str:
    """'new', 'resume' or 'done' for this run directory; ConfigError if it holds something else.
    A new directory gets ``.hydra/config.yaml`` (the resolved config) and ``overrides.yaml``."""
    entries = [p for p in run_dir.iterdir()] if run_dir.exists() else []
    if entries:
        stored = run_dir / ".hydra" / "config.yaml"
        if cfg.resume == "never":
            raise ConfigError(f"the run directory {run_dir} already holds files and resume=never. Choose "
                              "another directory (hydra.run.dir=...) or drop resume=never to continue that run.")
        if not stored.exists():
            raise ConfigError(f"the run directory {run_dir} holds files that are not an echo-run run. "
                              "Choose an empty or new directory with hydra.run.dir=...")
        mine = config_hash(OmegaConf.to_container(cfg, resolve=True))
        theirs = config_hash(OmegaConf.to_container(OmegaConf.load(stored), resolve=True))
        if mine != theirs:
            raise ConfigError(f"the run directory {run_dir} holds a run of another configuration (hash "
                              f"{theirs}, this command's is {mine}); it is left untouched. Re-run that run's "
                              "exact command to continue it, or choose another directory with hydra.run.dir=...")
        summary = run_dir / "summary.json"
        if summary.exists() and _complete(summary):
            return "done"
        return "resume"
    try:
        (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
        tmp = run_dir / ".hydra" / f"config.yaml.tmp{os.getpid()}"
        OmegaConf.save(cfg, tmp, resolve=True)
        os.replace(tmp, run_dir / ".hydra" / "config.yaml")  # a kill here never leaves half a config
    except OSError as e:
        raise ConfigError(unwritable(run_dir, e)) from None
    try:
        OmegaConf.save(HydraConfig.get().overrides.task, run_dir / ".hydra" / "overrides.yaml")
    except ValueError:  # composed outside @hydra.main (tests)
        pass
    return "new"


def unwritable(where: Path, e: OSError) -> str:
    return (f"cannot write the run directory {where}: {e.strerror or e}. Choose a directory you can write "
            "with hydra.run.dir=... (hydra.sweep.dir=... for -m), or free space there.")


class RunDirCheck(Callback):
    """Refuses an output directory that cannot be created before Hydra tries to, so the user gets
    one sentence and exit status 2 instead of Hydra's traceback."""

    def _check(self, d: str) -> None:
        try:
            Path(d).mkdir(parents=True, exist_ok=True)
            if not os.access(d, os.W_OK | os.X_OK):
                raise PermissionError(13, "permission denied")
        except OSError as e:
            fail(unwritable(Path(d), e))

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        self._check(config.hydra.run.dir)

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self._check(config.hydra.sweep.dir)


def _complete(summary: Path) -> bool:
    import json

    return json.loads(summary.read_text()).get("status") in ("complete", "diverged")


def _remove_if_empty(run_dir: Path) -> None:
    try:
        if run_dir.exists() and not any(run_dir.iterdir()):
            run_dir.rmdir()
    except OSError:
        pass


def _forget_new_run(run_dir: Path) -> None:
    """A new run refused before it trained (missing data, say) leaves no directory behind: only
    the .hydra/ this command wrote is removed, and only if nothing else is there."""
    import shutil

    if run_dir.exists() and {p.name for p in run_dir.iterdir()} <= {".hydra"}:
        shutil.rmtree(run_dir, ignore_errors=True)


CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


@hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")
def app(cfg: DictConfig) -> None:
    _state["started"] = True
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        validate(cfg)
        how = claim_run_dir(cfg, run_dir)
    except ConfigError as e:
        _remove_if_empty(run_dir)
        if not multirun:
            fail(str(e))
        # In a sweep one refused job must not stop the others; the process exits 2 at the end.
        print(f"echo-run: error: job {HydraConfig.get().job.num}: {e}", file=sys.stderr)
        _state["refused"].append(str(run_dir))
        return
    from .train import Preempted  # after validation: a refused command does not wait for torch
    if how == "done":
        print(f"echo-run: {run_dir} already holds this run, complete; nothing to do.", file=sys.stderr)
        return
    try:
        if cfg.launcher.name == "torchrun":
            from .launch import torchrun

            summary = torchrun(cfg, run_dir)
        else:
            from .train import run

            summary = run(cfg, run_dir)
    except ConfigError as e:
        if how == "new":
            _forget_new_run(run_dir)
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
