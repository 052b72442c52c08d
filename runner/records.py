"""Per-example results of a run's final record, beside ``metrics.jsonl``: which test examples the
final model got right (classification) or each test block's loss (language), in test-set order, so
that two methods evaluated on the same test set can be compared example by example (a paired
bootstrap over test examples) and not only by their seeds."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

FINAL_EXAMPLES = "final_examples.npz"


def write_final_examples(run_dir: Path, per_example: np.ndarray, task: str) -> Path:
    """Write ``run_dir/final_examples.npz`` (rank 0, at the end of a run), atomically.

    Format: a NumPy ``.npz`` archive (``numpy.load``) with

    - ``task``: the string ``"classification"`` or ``"language"``;
    - ``n``: the number of evaluated test examples (int64);
    - ``correct`` (classification): ``numpy.packbits`` of the boolean vector "the final model's
      prediction was right", one bit per example in test-set order (uint8, ``ceil(n / 8)`` bytes,
      big-endian bit order within each byte, the last byte zero-padded); or
    - ``loss`` (language): each test block's mean token cross-entropy in nats, float16, in test-set
      order.

    ``load_final_examples`` reads it back."""
    per_example = np.asarray(per_example)
    arrays = {"task": np.array(task), "n": np.array(len(per_example), dtype=np.int64)}
    if task == "classification":
        arrays["correct"] = np.packbits(per_example.astype(bool))
    else:
        arrays["loss"] = per_example.astype(np.float16)
    path = Path(run_dir) / FINAL_EXAMPLES
    tmp = path.with_name(f".{FINAL_EXAMPLES}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:  # a file object: np.savez would add ".npz" to a name
        np.savez(f, **arrays)
    os.replace(tmp, path)
    return path


def load_final_examples(run_dir: Path) -> np.ndarray:
    """The final record's per-example results of the run in ``run_dir``, in test-set order: a bool
    array (right or not) for classification, a float32 array of per-block losses for language.
    FileNotFoundError when the run wrote none (it did not finish, or predates this file)."""
    with np.load(Path(run_dir) / FINAL_EXAMPLES) as z:
        n = int(z["n"])
        if str(z["task"]) == "classification":
            return np.unpackbits(z["correct"], count=n).astype(bool)
        return z["loss"].astype(np.float32)
