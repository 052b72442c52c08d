"""``logger=wandb``: the same records as metrics.jsonl, sent to Weights & Biases.

Offline by default (``logger.mode=offline``): the run is written under ``<run dir>/wandb/`` and
nothing touches the network; ``wandb sync <run dir>/wandb/offline-run-*`` uploads it later, or
``logger.mode=online`` logs live. The W&B run id is derived from the run directory's config hash,
so a resumed run continues the same W&B run instead of starting a second one.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .config import config_hash


def numeric(rec: dict) -> dict:
    """The record's numbers, for W&B's history: None is left out; the strings that metrics.clean
    made of non-finite floats become floats again (W&B plots NaN and infinity as such)."""
    out = {}
    for k, v in rec.items():
        if isinstance(v, bool) or v is None:
            continue
        if isinstance(v, (int, float)):
            out[k] = v
        elif isinstance(v, str) and v.lower() in ("nan", "inf", "-inf"):
            out[k] = float(v)
    return out


class WandbSink:
    def __init__(self, cfg, run_dir: Path, resolved: dict):
        import wandb

        lg = cfg.logger
        run_dir = Path(run_dir)
        if lg.mode == "offline":
            # W&B reads this too; set so that no child process it starts tries the network.
            os.environ["WANDB_MODE"] = "offline"
        self.run = wandb.init(
            project=lg.project, entity=lg.entity, mode=lg.mode, dir=str(run_dir),
            id=f"echo-{config_hash(resolved)}-{_dir_tag(run_dir)}", resume="allow",
            name=cfg.name or run_dir.name, config=resolved, reinit="create_new",
            settings=wandb.Settings(silent=True, console="off", x_disable_stats=True))
        # Every clock is a possible x axis in the W&B UI; the step is the default.
        for x in ("example_loads", "epoch", "wall_s", "sim_s"):
            self.run.define_metric(x, hidden=False)

    def write(self, rec: dict) -> None:
        self.run.log(numeric(rec), step=int(rec["step"]))

    def close(self) -> None:
        self.run.finish()


def _dir_tag(run_dir: Path) -> str:
    return hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:8]
