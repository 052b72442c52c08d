"""Checkpoints: one plain dict per rank (model, optimizer, every generator, the pipeline's
position, counters and clocks), written atomically and loaded with ``weights_only=True``.

Each rank keeps its last two checkpoints (``rank<k>.pt`` and ``rank<k>.prev.pt``). Ranks save at
the same steps, and a rank cannot pass the next save point's collective before its peers have
finished the previous save, so after any crash the ranks' newest checkpoints are at most one save
apart and the older of the two is on every rank: ``load_agreed`` picks it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional

import torch

from .errors import ConfigError


def path(run_dir: Path, rank: int) -> Path:
    return Path(run_dir) / "checkpoint" / f"rank{rank}.pt"


def prev_path(run_dir: Path, rank: int) -> Path:
    return Path(run_dir) / "checkpoint" / f"rank{rank}.prev.pt"


def save(run_dir: Path, rank: int, state: dict) -> None:
    """Write to a temporary file, flush it to disk, then rename it over the newest checkpoint (which
    becomes the previous one), so that a kill or a full disk at any moment leaves a whole one."""
    p, prev = path(run_dir, rank), prev_path(run_dir, rank)
    tmp = p.with_suffix(f".tmp{os.getpid()}")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())  # the rename must not land before the bytes do
        if p.exists():
            os.replace(p, prev)
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


def _read(p: Path) -> Optional[dict]:
    if not p.exists():
        return None
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # a file that is not a checkpoint of this program, or a damaged one
        raise ConfigError(f"the checkpoint {p} cannot be read ({type(e).__name__}: {str(e)[:200]}). Move it "
                          "away to start the run from its beginning, or choose another directory with "
                          "hydra.run.dir=...") from None


def load(run_dir: Path, rank: int) -> Optional[dict]:
    """The newest checkpoint of ``rank`` (the previous one if a kill came between the two renames)."""
    return _read(path(run_dir, rank)) or _read(prev_path(run_dir, rank))


def load_agreed(run_dir: Path, rank: int, reduce_max: Optional[Callable[[list], list]] = None) -> Optional[dict]:
    """The checkpoint every rank can resume from: the newest step that all ranks have saved.
    ``reduce_max`` is the all-reduce over ranks (None for one process)."""
    newest = load(run_dir, rank)
    if reduce_max is None:
        return newest
    mine = newest["counters"]["step"] if newest is not None else -1
    common = -int(reduce_max([-float(mine)])[0])
    if common < 0:
        return None  # some rank has none: every rank starts from the beginning
    if common == mine:
        return newest
    older = _read(prev_path(run_dir, rank))
    if older is not None and older["counters"]["step"] == common:
        return older
    raise ConfigError(f"rank {rank} has no checkpoint of step {common}, the newest step every rank saved, so "
                      f"the ranks cannot resume together. Move {Path(run_dir) / 'checkpoint'} away to start "
                      "the run from its beginning.")
