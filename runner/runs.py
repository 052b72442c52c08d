"""A run directory's life: claim it (new, resume or done; refuse another configuration's) and run
the training in it, alone or as a torchrun job. The CLI, the advisor and the benchmarks start runs
through here; nothing here parses a command line."""
from __future__ import annotations

import errno
import json
import os
import shutil
import socket
from pathlib import Path
from typing import Optional

from omegaconf import DictConfig, OmegaConf

from .config import config_hash
from .errors import ConfigError


# A claim being written: ``<run_dir>/.hydra.claim-<host>-<pid>/``, renamed to ``.hydra/`` when whole.
CLAIMING = ".hydra.claim-"


def claim(cfg: DictConfig, run_dir: Path, overrides: Optional[list] = None) -> str:
    """'new', 'resume' or 'done' for this run directory; ConfigError if it holds something else.
    A new directory gets ``.hydra/config.yaml`` (the resolved config) and ``overrides.yaml``, both
    at once: ``.hydra/`` is written under another name and renamed into place, so that another
    process claiming the same directory at the same moment (every node of a multi-node job runs
    echo-run on the same directory) sees either no claim or a whole one, and exactly one of them
    writes it. The others get 'resume': they join the run that the first one claimed."""
    run_dir = Path(run_dir)
    if not _entries(run_dir) and _write_claim(cfg, run_dir, overrides):
        return "new"
    stored = run_dir / ".hydra" / "config.yaml"
    if cfg.resume == "never" and _entries(run_dir) - {".hydra"}:
        # A directory holding only a claim has nothing to continue (no node has trained yet).
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
    if finished(run_dir) or _stage_done(cfg, run_dir):
        return "done"
    _note_stop_at(cfg, stored)
    return "resume"


def _stage_done(cfg: DictConfig, run_dir: Path) -> bool:
    """A run stopped at or beyond this command's budget.stop_at holds the stage asked for: nothing to
    train (and nothing to resume, so a stage committed without its checkpoint is not trained again)."""
    f = OmegaConf.select(cfg, "budget.stop_at")
    if f is None or status(run_dir) != "stopped":
        return False
    try:
        got = json.loads((Path(run_dir) / "summary.json").read_text()).get("stopped_at_fraction")
    except (OSError, ValueError):
        return False
    return got is not None and float(got) >= float(f)


def _note_stop_at(cfg: DictConfig, stored: Path) -> None:
    """A staged run continues to this command's budget.stop_at (not hashed): the stored config, which
    torchrun's ranks read, takes it, replaced whole (no reader ever sees half a file)."""
    old = OmegaConf.load(stored)
    if OmegaConf.select(old, "budget.stop_at") == cfg.budget.stop_at:
        return
    old.budget.stop_at = cfg.budget.stop_at
    tmp = stored.with_name(f".config.yaml.tmp{os.getpid()}")
    OmegaConf.save(old, tmp)
    os.replace(tmp, stored)


def _entries(run_dir: Path) -> set:
    """Names in the run directory, less the claims other processes are writing."""
    if not run_dir.exists():
        return set()
    return {p.name for p in run_dir.iterdir() if not p.name.startswith(CLAIMING)}


def _write_claim(cfg: DictConfig, run_dir: Path, overrides: Optional[list]) -> bool:
    """Write ``.hydra/`` whole, then rename it into place; False when another process's claim got
    there first (a rename onto a directory that holds files fails)."""
    tmp = run_dir / f"{CLAIMING}{socket.gethostname()}-{os.getpid()}"
    try:
        shutil.rmtree(tmp, ignore_errors=True)  # left by a process of the same id that was killed here
        tmp.mkdir(parents=True)
        OmegaConf.save(cfg, tmp / "config.yaml", resolve=True)
        if overrides is not None:
            OmegaConf.save(OmegaConf.create(list(overrides)), tmp / "overrides.yaml")
        try:
            os.rename(tmp, run_dir / ".hydra")
        except OSError as e:
            if e.errno in (errno.EEXIST, errno.ENOTEMPTY):
                return False
            raise
        return True
    except OSError as e:
        raise ConfigError(unwritable(run_dir, e)) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # only there when this claim lost or failed


def status(run_dir: Path) -> str:
    """The status in the directory's summary ("complete", "diverged", "stopped"), or "unfinished"."""
    try:
        return str(json.loads((Path(run_dir) / "summary.json").read_text()).get("status") or "unfinished")
    except (OSError, ValueError):
        return "unfinished"


def finished(run_dir: Path) -> bool:
    """True when the directory's summary says the run ended (complete or diverged)."""
    return status(run_dir) in ("complete", "diverged")


def unwritable(where: Path, e: OSError) -> str:
    return (f"cannot write the run directory {where}: {e.strerror or e}. Choose a directory you can write "
            "with hydra.run.dir=... (hydra.sweep.dir=... for -m), or free space there.")


def forget_new(run_dir: Path) -> None:
    """A new run refused before it trained (missing data, say) leaves no directory behind: only
    the .hydra/ that claim wrote is removed, and only if nothing else is there."""
    run_dir = Path(run_dir)
    if run_dir.exists() and {p.name for p in run_dir.iterdir()} <= {".hydra"}:
        shutil.rmtree(run_dir, ignore_errors=True)


def start(cfg: DictConfig, run_dir: Path) -> Optional[dict]:
    """Train in a claimed directory: in this process, or as a torchrun job (``launcher=torchrun``).
    Returns the summary (None for a dry run). Raises ConfigError, Preempted."""
    if cfg.launcher.name == "torchrun":
        from .launch import torchrun

        return torchrun(cfg, Path(run_dir))
    from .train import run

    return run(cfg, Path(run_dir))


def run_once(cfg: DictConfig, run_dir: Path) -> Path:
    """Claim ``run_dir`` and train there unless it already holds this run, complete (the advisor's
    and the benchmarks' way to make sure a run exists)."""
    how = claim(cfg, run_dir)
    if how != "done":
        try:
            start(cfg, run_dir)
        except ConfigError:
            if how == "new":
                forget_new(run_dir)
            raise
    return Path(run_dir)
