"""A Hugging Face data set on disk: ``data.path=DIR`` written by ``save_to_disk`` (a ``DatasetDict`` or
one ``Dataset``) or a directory of parquet files (splits named by their files or folders, as on the
hub: ``train-00000-of-00001.parquet``, ``test/...``). Nothing is downloaded.

``data.task=classification``: images from ``data.image_column`` (an ``Image`` feature, raw bytes or
file paths), decoded per example in the pipeline's workers and transformed as ``image_folder`` does;
labels from ``data.label_column`` (a ``ClassLabel`` gives the classes, otherwise the distinct values of
the training split, sorted). ``data.task=language``: the text of ``data.text_column`` tokenised by the
tokenizer in the local directory ``data.tokenizer`` and cut into blocks of ``data.block_size`` tokens.

The test split: ``data.test_split`` when given, else ``test``, else ``validation``, else a fixed
random ``data.test_fraction`` of the training split (rows for images, token blocks for text) drawn
by ``data.split_seed``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from torch.utils.data import Dataset, TensorDataset

from .data import Splits, _split, blocks, cache_dir
from .errors import ConfigError
from .image_folder import decode, image_splits

TASKS = ("classification", "language")


def load(path: Path) -> dict:
    """The splits (name -> ``datasets.Dataset``) saved at ``path``."""
    import datasets

    if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
        ds = datasets.load_from_disk(str(path))
        return dict(ds) if isinstance(ds, datasets.DatasetDict) else {"train": ds}
    if any(path.rglob("*.parquet")):
        return dict(datasets.load_dataset("parquet", data_dir=str(path), cache_dir=str(cache_dir(None) / "hf")))
    raise ConfigError(f"data.path={path} holds neither a data set saved with save_to_disk (dataset_dict.json or "
                      "state.json) nor parquet files: point data.path at such a directory (e.g. written by "
                      "`datasets.load_dataset(...).save_to_disk(DIR)` on a machine with a network).")


def pick_splits(splits: dict, path: Path, train_split: str, test_split: Optional[str]):
    """(train, test or None when the test set is to be cut from train, the test split's name)."""
    names = ", ".join(sorted(splits))
    if train_split not in splits:
        raise ConfigError(f"the data set at {path} has no split {train_split!r} (data.train_split): its splits are "
                          f"{names}.")
    if test_split is not None:
        if test_split not in splits:
            raise ConfigError(f"the data set at {path} has no split {test_split!r} (data.test_split): its splits "
                              f"are {names}.")
        return splits[train_split], splits[test_split], test_split
    for name in ("test", "validation"):
        if name in splits and name != train_split:
            return splits[train_split], splits[name], name
    return splits[train_split], None, None


def need_column(ds, column: str, key: str, path: Path) -> None:
    if column not in ds.column_names:
        raise ConfigError(f"the data set at {path} has no column {column!r} ({key}): its columns are "
                          f"{', '.join(ds.column_names)}. Set {key}=<one of them>.")


class HFImages(Dataset):
    """Images of one column of a ``datasets.Dataset``, decoded on access (so in the pipeline's
    workers), with their class indices; ``transform`` applies to the uint8 (3, H, W) image."""

    def __init__(self, ds, column: str, labels: torch.Tensor, where: str, base: Path):
        import datasets

        feature = ds.features[column]
        if isinstance(feature, datasets.Image):  # the encoded file's bytes (or its path), not a PIL image
            ds = ds.select_columns([column]).cast_column(column, datasets.Image(decode=False))
        elif isinstance(feature, datasets.Value) and feature.dtype in ("binary", "large_binary", "string",
                                                                       "large_string"):
            ds = ds.select_columns([column])
        else:
            raise ConfigError(f"the column {column!r} of the data set at {where} holds {feature}, not images "
                              "(an Image feature, the bytes of image files or their paths): choose the image "
                              "column with data.image_column.")
        self.ds, self.column, self.labels, self.where, self.base = ds, column, labels, where, base
        self.transform = None

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        value = self.ds[int(i)][self.column]
        name = f"row {i} of column {self.column!r} of {self.where}"
        if isinstance(value, dict):  # an Image feature: bytes, or a path when the bytes are not embedded
            data, file = value.get("bytes"), value.get("path")
            name = f"{name} ({file})" if file else name
        else:
            data, file = (value, None) if isinstance(value, (bytes, bytearray)) else (None, value)
        if data is None:
            if not file:
                raise ConfigError(f"{name} holds no image: fill it or drop the row.")
            p = Path(file) if Path(file).is_absolute() else self.base / file
            try:
                data = p.read_bytes()
            except OSError as e:
                raise ConfigError(f"the image {p} ({name}) could not be read ({type(e).__name__}: {e}).") from None
            name = str(p)
        x = decode(data, name)
        if self.transform is not None:
            x = self.transform(x)
        return x, self.labels[i]


def class_indices(train, test, column: str, where: Path) -> tuple[torch.Tensor, torch.Tensor, list]:
    """Class indices of both splits and the class names: a ClassLabel's, else the training split's
    distinct values, sorted."""
    import datasets

    feature = train.features[column]
    if isinstance(feature, datasets.ClassLabel):
        classes = list(feature.names)
        other = test.features.get(column)
        if isinstance(other, datasets.ClassLabel) and list(other.names) != classes:
            raise ConfigError(f"the column {column!r} of the data set at {where} names other classes in its test "
                              f"split ({', '.join(other.names)}) than in train ({', '.join(classes)}).")
        lookup = {i: i for i in range(len(classes))}
    else:
        values = list(train[column])
        try:
            classes = sorted(set(values))
        except TypeError:
            raise ConfigError(f"the column {column!r} of the data set at {where} holds {feature}, not class labels: "
                              "choose the label column with data.label_column.") from None
        lookup = {v: i for i, v in enumerate(classes)}

    def indices(ds, split: str) -> torch.Tensor:
        values = list(ds[column])
        bad = sorted({repr(v) for v in values if v not in lookup})
        if bad:
            raise ConfigError(f"the {split} split of the data set at {where} has labels {', '.join(bad[:10])} in "
                              f"column {column!r} that are not classes of the training split (unlabelled rows "
                              "are -1 or null): drop those rows or choose another split with data.test_split.")
        return torch.tensor([lookup[v] for v in values], dtype=torch.long)

    return indices(train, "training"), indices(test, "test"), [str(c) for c in classes]


def classification(train, test, path: Path, image_column: str, label_column: str, image_size: int,
                   augment: bool) -> Splits:
    for ds in (train, test):
        need_column(ds, image_column, "data.image_column", path)
        need_column(ds, label_column, "data.label_column", path)
    y_train, y_test, classes = class_indices(train, test, label_column, path)
    sets = [HFImages(ds, image_column, y, str(path), path) for ds, y in ((train, y_train), (test, y_test))]
    return image_splits(*sets, len(classes), image_size, augment,
                        {"name": "hf", "source": str(path), "classes": classes})


def load_tokenizer(tokenizer: Optional[str]):
    from transformers import AutoTokenizer

    fix = ("On a machine with a network run `python -c \"from transformers import AutoTokenizer; "
           "AutoTokenizer.from_pretrained('NAME').save_pretrained('DIR')\"`, copy DIR here and set data.tokenizer=DIR.")
    if tokenizer is None or not Path(tokenizer).expanduser().is_dir():
        raise ConfigError(f"data.task=language needs data.tokenizer=DIR, a local directory with a tokenizer "
                          f"(tokenizer.json or the tokenizer's own files); {tokenizer!r} is not one. {fix}")
    try:
        tok = AutoTokenizer.from_pretrained(str(Path(tokenizer).expanduser()), local_files_only=True)
    # Missing or unrecognised files raise OSError or ValueError; a damaged tokenizer.json a bare Exception.
    except Exception as e:  # tokenizers (Rust) raises the Exception type itself: no narrower class catches it
        raise ConfigError(f"the tokenizer in data.tokenizer={tokenizer} could not be loaded ({type(e).__name__}: "
                          f"{str(e)[:200]}). {fix}") from None
    tok.model_max_length = 1 << 30  # the token stream is cut into blocks here, never truncated
    return tok


def language(train, test, path: Path, text_column: str, tokenizer: Optional[str], block_size: int,
             test_fraction: float, split_seed: int) -> Splits:
    import datasets

    from .text import token_ids

    for ds in [train] + ([test] if test is not None else []):
        need_column(ds, text_column, "data.text_column", path)
        feature = ds.features[text_column]
        if not isinstance(feature, datasets.Value) or feature.dtype not in ("string", "large_string"):
            raise ConfigError(f"the column {text_column!r} of the data set at {path} holds "
                              f"{ds.features[text_column]}, not text: choose it with data.text_column.")
    if block_size < 1:
        raise ConfigError(f"data.block_size={block_size} must be a positive number of tokens.")
    tok = load_tokenizer(tokenizer)
    ids = lambda ds: token_ids((t or "" for t in ds[text_column]), tok)  # noqa: E731
    train_set = blocks(ids(train), block_size)
    if test is None:  # a fixed split of the blocks (they do not overlap, so no token is in both)
        x, y = train_set.tensors
        tr, te = _split(len(train_set), test_fraction, split_seed) if len(train_set) > 1 else ([], [])
        train_set, test_set = TensorDataset(x[tr], y[tr]), TensorDataset(x[te], y[te])
    else:
        test_set = blocks(ids(test), block_size)
    if len(train_set) == 0 or len(test_set) == 0:
        raise ConfigError(f"the text of the data set at {path} makes fewer than two blocks of data.block_size="
                          f"{block_size} tokens per split ({len(train_set)} for training, {len(test_set)} for "
                          "test): choose a smaller block size or a larger data set.")
    return Splits(train_set, test_set, "language",
                  {"vocab_size": len(tok), "block_size": block_size, "name": "hf", "source": str(path)})


def hf(path: Optional[str] = None, task: str = "classification", image_column: str = "image",
       label_column: str = "label", image_size: int = 64, augment: bool = True, text_column: str = "text",
       tokenizer: Optional[str] = None, block_size: int = 128, train_split: str = "train",
       test_split: Optional[str] = None, test_fraction: float = 0.1, split_seed: int = 0) -> Splits:
    """A Hugging Face data set from the local directory ``path``."""
    if task not in TASKS:
        raise ConfigError(f"data.task={task!r} is not a task of dataset=hf: choose {' or '.join(TASKS)}.")
    if path is None:
        raise ConfigError("dataset=hf needs data.path=DIR, a directory written by `save_to_disk` or holding parquet "
                          "files.")
    where = Path(path).expanduser()
    if not where.is_dir():
        raise ConfigError(f"data.path={path} is not a directory: point it at a data set written by "
                          "`datasets.Dataset.save_to_disk(DIR)` (or DatasetDict's) or at a directory of parquet files.")
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"data.test_fraction={test_fraction} must be between 0 and 1.")
    train, test, test_name = pick_splits(load(where), where, train_split, test_split)
    if task == "language":
        splits = language(train, test, where, text_column, tokenizer, block_size, test_fraction, split_seed)
    else:
        if image_size < 1:
            raise ConfigError(f"data.image_size={image_size} must be a positive number of pixels.")
        if test is None:
            tr, te = _split(len(train), test_fraction, split_seed)
            train, test = train.select(tr), train.select(te)
        splits = classification(train, test, where, image_column, label_column, image_size, augment)
    # Which data the test metric is measured on, for the records.
    splits.info["test_split"] = test_name or f"{test_fraction:g} of {train_split} (split_seed={split_seed})"
    return splits
