"""Checkpoints: one plain dict per rank (model, optimizer, every generator, the pipeline's
position, counters and clocks), written atomically and loaded with ``weights_only=True``."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import torch


def path(run_dir: Path, rank: int) -> Path:
    return Path(run_dir) / "checkpoint" / f"rank{rank}.pt"


def save(run_dir: Path, rank: int, state: dict) -> None:
    p = path(run_dir, rank)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(f".tmp{os.getpid()}")
    try:
        torch.save(state, tmp)
        os.replace(tmp, p)  # a crash mid-write leaves the previous checkpoint whole
    finally:
        if tmp.exists():
            tmp.unlink()


def load(run_dir: Path, rank: int) -> Optional[dict]:
    p = path(run_dir, rank)
    if not p.exists():
        return None
    return torch.load(p, map_location="cpu", weights_only=True)
