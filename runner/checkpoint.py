"""Checkpoints: one plain dict per rank (model, optimizer, every generator, the pipeline's
position, counters and clocks), written atomically and loaded with ``weights_only=True``.

Each rank keeps its last two checkpoints (``rank<k>.pt`` and ``rank<k>.prev.pt``). Ranks save at
the same steps, and a rank cannot pass the next save point's collective before its peers have
finished the previous save, so after any crash the ranks' newest checkpoints are at most one save
apart and the older of the two is on every rank: ``load_agreed`` picks it.

A newest checkpoint that cannot be read (a disk error, a file damaged after it was written) is
reported on stderr and moved aside to ``rank<k>.damaged.pt``, and the run continues from the
previous one: it replays the steps in between and ends as an unbroken run would. Only when no
readable checkpoint remains is the run refused (ConfigError).
"""
from __future__ import annotations

import os
import pickle
import sys
import zipfile
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


def damaged_path(run_dir: Path, rank: int) -> Path:
    return Path(run_dir) / "checkpoint" / f"rank{rank}.damaged.pt"


class Unreadable(Exception):
    """A checkpoint file that exists and cannot be read."""


def _read(p: Path) -> Optional[dict]:
    """The checkpoint in ``p``; None when there is no such file; Unreadable when it cannot be read."""
    if not p.exists():
        return None
    try:
        # torch.save writes a zip archive whose records carry a CRC-32 that torch.load does not check:
        # a block of the tensors' bytes zeroed on disk would load, and resume a different run.
        with zipfile.ZipFile(p) as z:
            bad = z.testzip()
        if bad is not None:
            raise Unreadable(f"its record {bad} fails its CRC-32 check")
        st = torch.load(p, map_location="cpu", weights_only=True)
    # What a truncated, zeroed or overwritten file raises: zipfile's BadZipFile, torch's zip reader's
    # RuntimeError, the unpickler's error (weights_only), EOFError, a UnicodeDecodeError (ValueError).
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as e:
        raise Unreadable(f"{type(e).__name__}: {' '.join(str(e).split())[:200]}") from e
    if not isinstance(st, dict) or not isinstance(st.get("counters"), dict):
        raise Unreadable("it holds no checkpoint of echo-run")
    return st


def _refused(run_dir: Path, rank: int, why: str) -> ConfigError:
    return ConfigError(f"no readable checkpoint of rank {rank} remains in {Path(run_dir) / 'checkpoint'} ({why}). "
                       "Move that directory away to start the run from its beginning, or choose another "
                       "directory with hydra.run.dir=...")


def load(run_dir: Path, rank: int) -> Optional[dict]:
    """The newest readable checkpoint of ``rank``: ``rank<k>.pt``, else ``rank<k>.prev.pt`` (a kill
    between the two renames of a save, or a damaged newest file, which is reported and moved aside);
    None when there is none; ConfigError when files exist and none can be read."""
    p, prev = path(run_dir, rank), prev_path(run_dir, rank)
    try:
        newest = _read(p)
    except Unreadable as e:
        older = _read_or_refuse(run_dir, rank, prev, f"{p.name}: {e}")
        if older is None:
            raise _refused(run_dir, rank, f"{p.name} cannot be read ({e}) and there is no {prev.name}") from e
        os.replace(p, damaged_path(run_dir, rank))  # kept for a look; the next save must not rotate it in
        print(f"echo-run: warning: the checkpoint {p} cannot be read ({e}); it was moved to "
              f"{damaged_path(run_dir, rank).name}, and the run continues from the previous checkpoint "
              f"(step {older['counters']['step']}), replaying the steps after it.", file=sys.stderr)
        return older
    return newest if newest is not None else _read_or_refuse(run_dir, rank, prev, "")


def _read_or_refuse(run_dir: Path, rank: int, p: Path, before: str) -> Optional[dict]:
    try:
        return _read(p)
    except Unreadable as e:
        raise _refused(run_dir, rank, "; ".join(filter(None, (before, f"{p.name}: {e}")))) from e


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
    older = _read_or_refuse(run_dir, rank, prev_path(run_dir, rank), "") if mine > common else None
    if older is not None and older["counters"]["step"] == common:
        return older
    raise ConfigError(f"rank {rank} has no checkpoint of step {common}, the newest step every rank saved, so "
                      f"the ranks cannot resume together. Move {Path(run_dir) / 'checkpoint'} away to start "
                      "the run from its beginning.")
