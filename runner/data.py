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

from .schema import ConfigError


@dataclass
class Splits:
    train: Dataset
    test: Dataset
    task: str  # classification | language
    info: Dict[str, Any] = field(default_factory=dict)  # num_classes, in_channels, vocab_size, ...
    # Turns a batch of training examples into another view of them (augmentation on echo).
    augment: Optional[Callable] = None


def cache_dir(root: Optional[str]) -> Path:
    base = Path(root) if root else Path(os.environ.get("ECHO_RUN_CACHE", Path.home() / ".cache" / "echo-run"))
    base.mkdir(parents=True, exist_ok=True)
    return base


def _split(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixed random train/test split of n items, decided by ``seed`` alone."""
    perm = np.random.default_rng(seed).permutation(n)
    n_test = max(1, int(round(n * test_fraction)))
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def _limit(ds: Dataset, n: Optional[int]) -> Dataset:
    if n is None or n >= len(ds):
        return ds
    if isinstance(ds, TensorDataset):
        return TensorDataset(*(t[:n] for t in ds.tensors))
    return Subset(ds, range(n))


def digits(d) -> Splits:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes)."""
    from sklearn.datasets import load_digits

    raw = load_digits()
    x = torch.tensor(raw.data, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    x = (x - 0.3) / 0.4  # roughly zero mean, unit variance
    y = torch.tensor(raw.target, dtype=torch.long)
    tr, te = _split(len(y), d.test_fraction, d.split_seed)
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


def python_docs(d) -> Splits:
    """The English text of Python's own documentation topics (``pydoc_data.topics``)."""
    text = python_docs_text()
    tok = bpe_tokenizer(text, d.vocab_size, cache_dir(d.root), "python_docs")
    ids = torch.tensor(tok.encode(text).ids, dtype=torch.long)
    ds = blocks(ids, d.block_size)
    tr, te = _split(len(ds), d.test_fraction, d.split_seed)
    x, y = ds.tensors
    return Splits(TensorDataset(x[tr], y[tr]), TensorDataset(x[te], y[te]), "language",
                  {"vocab_size": tok.get_vocab_size(), "block_size": d.block_size, "name": "python_docs"})


def _lazy(module: str, name: str) -> Callable[[Any], Splits]:
    """A builder in another module, imported on use (torchvision and datasets load only when needed)."""
    def build(d) -> Splits:
        import importlib

        return getattr(importlib.import_module(f"{__package__}.{module}"), name)(d)
    return build


BUILDERS: Dict[str, Callable[[Any], Splits]] = {
    "digits": digits, "python_docs": python_docs,
    "cifar10": _lazy("vision", "cifar10"), "cifar100": _lazy("vision", "cifar100"),  # runner/vision.py
    "wikitext2": _lazy("text", "wikitext2"),  # runner/text.py
}


def build(d) -> Splits:
    if d.name not in BUILDERS:
        raise ConfigError(f"data.name={d.name!r} is not a known data set: choose one of "
                          + ", ".join(sorted(BUILDERS)) + " (dataset=<name>).")
    s = BUILDERS[d.name](d)
    if s.task != d.task:
        raise ConfigError(f"data.task={d.task!r} does not match data set {d.name!r}, which is {s.task}.")
    s.train = _limit(s.train, d.max_train_examples)
    s.test = _limit(s.test, d.max_test_examples)
    return s
