"""MNIST and Fashion-MNIST through torchvision's own classes (``torchvision.datasets.MNIST`` /
``FashionMNIST``), read from the four raw IDX files, gzipped or not.

Where the files may be: ``data.root`` in torchvision's layout (``<root>/FashionMNIST/raw/...``) or a
flat directory that holds the four files directly (Debian's ``dataset-fashion-mnist`` package puts
them, gzipped, in ``/usr/share/datasets/fashion-mnist``). With ``data.root`` unset: the cache
directory (``$ECHO_RUN_CACHE`` or ``~/.cache/echo-run``), then the system directory. torchvision reads
only uncompressed files in its own layout, so files found elsewhere are decompressed (``.gz``) or
linked into a prepared root under the cache once; torchvision does the parsing.

``data.augment=false``: both splits are in-memory ``TensorDataset``s of normalised float images
(1x28x28), the pipeline's fast path. ``data.augment=true``: training items are uint8 images and the
pipeline applies ``train_transform`` per example (a random crop with 2-pixel padding, plus a
horizontal flip for Fashion-MNIST's clothes, not for digits).
"""
from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

import torch
from torch.utils.data import TensorDataset
from torchvision import datasets as tvd
from torchvision.datasets.utils import extract_archive
from torchvision.transforms import v2

from .data import Splits, cache_dir
from .errors import ConfigError
from .vision import crop_flip

PAD = 2  # a 28x28 image's usual random-crop padding
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@dataclass(frozen=True)
class Kind:
    """What differs between the two sets."""

    cls: type  # torchvision's class
    mean: float  # of the training pixels, in [0, 1]
    std: float
    flip: bool  # clothes may be mirrored, digits not
    system: Optional[Path]  # where a distribution's package puts the files
    apt: Optional[str]  # that package


KINDS = {
    "fashion_mnist": Kind(tvd.FashionMNIST, 0.2860, 0.3530, True, Path("/usr/share/datasets/fashion-mnist"),
                          "dataset-fashion-mnist"),
    "mnist": Kind(tvd.MNIST, 0.1307, 0.3081, False, None, None),
}


def find_files(folder: Path, cls) -> Optional[Dict[str, Path]]:
    """The four files in ``folder`` (torchvision's ``<Class>/raw/`` inside it, or directly), each
    uncompressed or ``.gz``; None unless all four are in one place."""
    for where in (folder / cls.__name__ / "raw", folder):
        found = {}
        for name in FILES:
            for cand in (where / name, where / f"{name}.gz"):
                if cand.is_file():
                    found[name] = cand
                    break
        if len(found) == len(FILES):
            return found
    return None


def torchvision_root(files: Dict[str, Path], cls, cache: Path) -> Path:
    """A root that torchvision's class reads: the files' own when they are uncompressed in its
    layout, else a prepared copy under the cache (decompressed or linked), made once per source."""
    raw = {p.parent for p in files.values()}
    if len(raw) == 1 and all(p.name == n for n, p in files.items()):
        parent = next(iter(raw))
        if parent.name == "raw" and parent.parent.name == cls.__name__:
            return parent.parent.parent
    # Keyed by where the files are and their size and time: a changed source gets a new copy.
    ident = "\n".join(f"{p.resolve()}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files.values())
    root = cache / "idx" / f"{cls.__name__}-{hashlib.sha1(ident.encode()).hexdigest()[:12]}"
    if (root / cls.__name__ / "raw").is_dir():
        return root
    tmp = root.with_name(f"{root.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    out = tmp / cls.__name__ / "raw"
    out.mkdir(parents=True)
    for name, path in files.items():
        if path.suffix == ".gz":
            extract_archive(str(path), str(out))  # torchvision's own decompression, to out/<name>
        else:
            (out / name).symlink_to(path.resolve())
    try:
        os.replace(tmp, root)  # atomic: concurrent runs (ranks, sweep jobs) never see half a copy
    except OSError:  # another process made it first
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def _not_found(name: str, kind: Kind, looked: list, target: Path, why: str) -> ConfigError:
    cls = kind.cls.__name__
    where = " and ".join(f"{d} (as {d / cls / 'raw'}/ and directly)" for d in looked)
    apt = (f"install Debian's package (`apt-get install {kind.apt}`, which puts them in {kind.system}), or "
           if kind.apt else "")
    return ConfigError(
        f"data set {name} was not found: echo-run looked in {where} for the files "
        f"{', '.join(FILES)} (each gzipped or not), and {why}. To fix it, {apt}on a machine with a network "
        f"run `echo-run dataset={name} data.root={target}` once (torchvision downloads them into "
        f"{target / cls / 'raw'}) and copy {target} here; then point data.root=DIR at a directory that "
        f"holds the four files, directly or in {cls}/raw/.")


def locate(name: str, kind: Kind, root: Optional[str], download: bool) -> tuple[Path, Path]:
    """(torchvision root, the directory the files were found in), downloading when allowed."""
    cache = cache_dir(None)
    if root is not None:
        looked = [Path(root).expanduser()]
    else:
        looked = [cache] + ([kind.system] if kind.system is not None else [])
    for folder in looked:
        files = find_files(folder, kind.cls)
        if files is not None:
            return torchvision_root(files, kind.cls, cache), next(iter(files.values())).parent
    target = looked[0]
    if not download:
        raise _not_found(name, kind, looked, target, "data.download=false, so nothing was downloaded")
    try:
        kind.cls(str(target), train=True, download=True)  # fetches all four files into <target>/<Class>/raw
    except (OSError, RuntimeError) as e:  # no network, a proxy refusing (OSError); torchvision's own RuntimeError
        said = " ".join(str(e).split())[:300]  # torchvision lists each mirror's error on its own line
        raise _not_found(name, kind, looked, target, f"downloading them with torchvision failed "
                                                     f"({type(e).__name__}: {said})") from None
    return target, target / kind.cls.__name__ / "raw"


def random_crop(x: torch.Tensor, pad: int, fill: torch.Tensor) -> torch.Tensor:
    """A random ``pad``-padded crop per example of a batch (N, C, H, W), padded with ``fill`` (C,), on
    ``x``'s device: ``crop_flip`` without its flip, for images that must not be mirrored (digits)."""
    n, c, h, w = x.shape
    padded = x.new_empty((n, c, h + 2 * pad, w + 2 * pad))
    padded[:] = fill.to(x.device, x.dtype).view(1, c, 1, 1)
    padded[:, :, pad:pad + h, pad:pad + w] = x
    top = torch.randint(0, 2 * pad + 1, (n, 1, 1, 1), device=x.device)
    left = torch.randint(0, 2 * pad + 1, (n, 1, 1, 1), device=x.device)
    rows = top + torch.arange(h, device=x.device).view(1, 1, h, 1)
    cols = left + torch.arange(w, device=x.device).view(1, 1, 1, w)
    return padded.gather(2, rows.expand(n, c, h, w + 2 * pad)).gather(3, cols.expand(n, c, h, w))


def echo_augment(kind: Kind):
    """Re-augments an echoed (normalised) batch on its device: a new crop (and flip, for clothes),
    padded with the normalised value of black as the CPU transform pads."""
    fill = torch.tensor([-kind.mean / kind.std])

    def augment(batch):
        x, *rest = batch
        return [crop_flip(x, PAD, fill) if kind.flip else random_crop(x, PAD, fill), *rest]

    return augment


def train_transform(kind: Kind) -> v2.Compose:
    """The random per-example transform of a uint8 (1, 28, 28) training image."""
    return v2.Compose([v2.RandomCrop(28, padding=PAD), *([v2.RandomHorizontalFlip()] if kind.flip else []),
                       v2.ToDtype(torch.float32, scale=True), v2.Normalize([kind.mean], [kind.std])])


def load(name: str, root: Optional[str], download: bool, augment: bool) -> Splits:
    kind = KINDS[name]
    tv_root, source = locate(name, kind, root, download)
    try:
        train, test = (kind.cls(str(tv_root), train=t, download=False) for t in (True, False))
    except (RuntimeError, ValueError, TypeError, AssertionError, IndexError) as e:  # a truncated or foreign file
        raise ConfigError(f"data set {name}: the IDX files in {source} could not be read by torchvision "
                          f"({type(e).__name__}: {e}); replace them with the original files "
                          f"({', '.join(FILES)}, gzipped or not) or point data.root=DIR elsewhere.") from None

    def normalised(images: torch.Tensor) -> torch.Tensor:
        return (images.unsqueeze(1).float() / 255.0 - kind.mean) / kind.std

    y_train, y_test = train.targets.long(), test.targets.long()
    test_set = TensorDataset(normalised(test.data), y_test)
    info = {"num_classes": 10, "in_channels": 1, "image_size": 28, "name": name, "source": str(source),
            "classes": list(kind.cls.classes)}
    if augment:
        return Splits(TensorDataset(train.data.unsqueeze(1).contiguous(), y_train), test_set, "classification",
                      info, augment=echo_augment(kind), train_transform=train_transform(kind))
    return Splits(TensorDataset(normalised(train.data), y_train), test_set, "classification", info,
                  augment=echo_augment(kind))


def fashion_mnist(root: Optional[str] = None, download: bool = True, augment: bool = False) -> Splits:
    """Fashion-MNIST: 60,000 training and 10,000 test 28x28 grayscale images of clothes, 10 classes."""
    return load("fashion_mnist", root, download, augment)


def mnist(root: Optional[str] = None, download: bool = True, augment: bool = False) -> Splits:
    """MNIST: 60,000 training and 10,000 test 28x28 grayscale handwritten digits, 10 classes."""
    return load("mnist", root, download, augment)
