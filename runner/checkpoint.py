"""Checkpoints: one plain dict per rank (model, optimizer, every generator, the pipeline's
position, counters and clocks), written atomically and loaded with ``weights_only=True``."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import torch

from .schema import ConfigError


def path(run_dir: Path, rank: int) -> Path:
    return Path(run_dir) / "checkpoint" / f"rank{rank}.pt"


def save(run_dir: Path, rank: int, state: dict) -> None:
    """Write to a temporary file, flush it to disk, then rename over the previous checkpoint, so
    that a kill or a full disk at any moment leaves the previous checkpoint whole."""
    p = path(run_dir, rank)
    tmp = p.with_suffix(f".tmp{os.getpid()}")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())  # the rename must not land before the bytes do
        os.replace(tmp, p)
        for stale in p.parent.glob(f"{p.stem}.tmp*"):  # left by a process killed mid-write
            stale.unlink(missing_ok=True)
    except OSError as e:
        raise ConfigError(
            f"could not write the checkpoint {p}: {e.strerror or e}. The previous checkpoint (if any) is "
            "intact. Free space in (or make writable) the run directory, then run the same command again "
            "to continue from it.") from None
    finally:
        if tmp.exists() or tmp.is_symlink():
            tmp.unlink()


def load(run_dir: Path, rank: int) -> Optional[dict]:
    p = path(run_dir, rank)
    if not p.exists():
        return None
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # a file that is not a checkpoint of this program, or a damaged one
        raise ConfigError(f"the checkpoint {p} cannot be read ({type(e).__name__}: {str(e)[:200]}). Move it "
                          "away to start the run from its beginning, or choose another directory with "
                          "hydra.run.dir=...") from None

