"""Metrics sinks: JSON lines always, a console progress bar, and Weights & Biases when chosen."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

from tqdm import tqdm


def read_jsonl(path: Path) -> list:
    """The complete records of a metrics file (a line cut short by a crash is ignored)."""
    if not Path(path).exists():
        return []
    out = []
    for line in Path(path).read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return out


class JsonlSink:
    """Appends one record per line. After a resume the loop replays records it had already
    written; the first ``len(existing)`` records are skipped so the file is never duplicated."""

    def __init__(self, path: Path):
        self.path = Path(path)
        existing = read_jsonl(self.path)
        self.skip = len(existing)
        if self.path.exists():
            # Drop a trailing partial line left by a crash mid-write, keeping every whole record.
            whole = "".join(json.dumps(r) + "\n" for r in existing)
            if self.path.read_text() != whole:
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text(whole)
                os.replace(tmp, self.path)
        self.index = 0

    def write(self, rec: dict) -> None:
        self.index += 1
        if self.index <= self.skip:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(rec, allow_nan=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def close(self) -> None:
        pass


class Progress:
    """loads/budget, steps, p_t and the last test metric on one console line."""

    def __init__(self, total: float, unit: str, enabled: bool):
        self.bar = tqdm(total=round(total), unit=unit, disable=not enabled, dynamic_ncols=True, leave=True,
                        mininterval=0.5)

    def update(self, done: float, **fields) -> None:
        self.bar.n = min(round(done), self.bar.total)
        self.bar.set_postfix({k: (f"{v:.3g}" if isinstance(v, float) else v) for k, v in fields.items()},
                             refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def clean(rec: dict) -> dict:
    """JSON has no NaN: non-finite floats become strings that say what they were."""
    return {k: (str(v) if isinstance(v, float) and not math.isfinite(v) else v) for k, v in rec.items()}


def write_json(path: Path, obj: dict) -> None:
    tmp = Path(path).with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def build_sinks(cfg, run_dir: Path, resolved: dict) -> list:
    sinks = [JsonlSink(run_dir / "metrics.jsonl")]
    if cfg.logger.name == "wandb":
        from .wandb_sink import WandbSink

        sinks.append(WandbSink(cfg, run_dir, resolved))
    return sinks
