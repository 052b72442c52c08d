"""Data sets: each builder returns a ``Splits`` of train and test sets plus what a model needs to
know about them. The embedded sets ship with a dependency, so the default run needs no network."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import numpy as np
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from .errors import ConfigError


@dataclass
class Splits:
    """What a data set builder returns.

    ``train`` items are ``(x, y)`` decoded but not randomly augmented; ``train_transform``, when set,
    is the random per-example transform (torchvision.transforms.v2) that the pipeline applies in its
    workers, seeded by (seed, epoch, example index) so that views never depend on workers or timing.
    ``test`` items are ready for evaluation (deterministic transforms inside the data set).
    """

    train: Dataset
    test: Dataset
    task: str  # classification | language
    info: Dict[str, Any] = field(default_factory=dict)  # num_classes, in_channels, image_size, vocab_size, ...
    # Turns a batch of training examples into another view of them (augmentation on echo, on the device).
    augment: Optional[Callable] = None
    train_transform: Optional[Callable] = None


def cache_dir(root: Optional[str]) -> Path:
    base = Path(root) if root else Path(os.environ.get("ECHO_RUN_CACHE", Path.home() / ".cache" / "echo-run"))
    base.mkdir(parents=True, exist_ok=True)
    return base


def _split(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixed random train/test split of n items, decided by ``seed`` alone."""
    perm = np.random.default_rng(seed).permutation(n)
    n_test = max(1, int(round(n * test_fraction)))
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def subset(ds: Dataset, n: Optional[int]) -> Dataset:
    """A fixed random subset of ``n`` examples, in their order (the same for every run: a data set
    stored class by class, such as an image folder, keeps every class)."""
    if n is None or n >= len(ds):
        return ds
    keep = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))[:n].sort().values
    if isinstance(ds, TensorDataset):
        return TensorDataset(*(t[keep] for t in ds.tensors))
    return Subset(ds, keep.tolist())


def digits(test_fraction: float = 0.2, split_seed: int = 0) -> Splits:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes); the train/test split
    is fixed by ``split_seed``, not by the run's seed."""
    from sklearn.datasets import load_digits

    raw = load_digits()
    x = torch.tensor(raw.data, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    x = (x - 0.3) / 0.4  # roughly zero mean, unit variance
    y = torch.tensor(raw.target, dtype=torch.long)
    tr, te = _split(len(y), test_fraction, split_seed)
    return Splits(TensorDataset(x[tr], y[tr]), TensorDataset(x[te], y[te]), "classification",
                  {"num_classes": 10, "in_channels": 1, "image_size": 8, "name": "digits"})


def python_docs_text() -> str:
    import pydoc_data.topics as topics

    return "\n\n".join(topics.topics[k] for k in sorted(topics.topics))


def bpe_tokenizer(text: str, vocab_size: int, cache: Path, name: str):
    """A byte-level BPE trained on ``text`` by `tokenizers`, cached as one JSON file."""
    from tokenizers import Tokenizer
    from tokenizers.models import BPE
    from tokenizers.pre_tokenizers import ByteLevel
    from tokenizers.decoders import ByteLevel as ByteLevelDecoder
    from tokenizers.trainers import BpeTrainer

    path = cache / f"{name}_bpe{vocab_size}.json"
    if path.exists():
        return Tokenizer.from_file(str(path))
    tok = Tokenizer(BPE())
    tok.pre_tokenizer = ByteLevel(add_prefix_space=False)
    tok.decoder = ByteLevelDecoder()
    trainer = BpeTrainer(vocab_size=vocab_size, initial_alphabet=ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([text], trainer=trainer)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tok.save(str(tmp))
    os.replace(tmp, path)  # atomic: concurrent runs never read half a file
    return tok


def blocks(ids: torch.Tensor, block_size: int) -> TensorDataset:
    """Non-overlapping blocks of ``block_size`` tokens with next-token targets."""
    n = (len(ids) - 1) // block_size
    x = ids[: n * block_size].reshape(n, block_size)
    y = ids[1 : n * block_size + 1].reshape(n, block_size)
    return TensorDataset(x, y)


def python_docs(root: Optional[str] = None, block_size: int = 64, vocab_size: int = 1024,
                test_fraction: float = 0.2, split_seed: int = 0) -> Splits:
    """The English text of Python's own documentation topics (``pydoc_data.topics``), tokenised by a
    byte-level BPE of ``vocab_size`` trained on first use and cached in ``root``."""
    text = python_docs_text()
    tok = bpe_tokenizer(text, vocab_size, cache_dir(root), "python_docs")
    ids = torch.tensor(tok.encode(text).ids, dtype=torch.long)
    ds = blocks(ids, block_size)
    tr, te = _split(len(ds), test_fraction, split_seed)
    x, y = ds.tensors
    return Splits(TensorDataset(x[tr], y[tr]), TensorDataset(x[te], y[te]), "language",
                  {"vocab_size": tok.get_vocab_size(), "block_size": block_size, "name": "python_docs"})


def build(d) -> Splits:
    """The data set of the ``data`` config: its ``_target_`` called with its arguments (the runner's
    own keys left out), then cut to ``max_train_examples`` / ``max_test_examples``."""
    from .config import build as build_component
    from .schema import DataKeys

    s = build_component(d, DataKeys)
    if not isinstance(s, Splits):
        raise ConfigError(f"data._target_={d._target_!r} returned {type(s).__name__}, not runner.data.Splits: a data "
                          "set builder returns Splits(train, test, task, info) (README, \"Your own code: components "
                          "by _target_\").")
    s.train = subset(s.train, d.max_train_examples)
    s.test = subset(s.test, d.max_test_examples)
    return s
