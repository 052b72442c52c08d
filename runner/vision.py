"""CIFAR-10 and CIFAR-100 through ``torchvision.datasets``: the official train/test splits, the
standard augmentation (``transforms.v2``: random crop with 4-pixel padding, horizontal flip, applied
per example in the pipeline's workers) and per-channel normalisation, plus the same augmentation on
the device for echoed batches (``data.augment_on_echo``).

An echoed batch is already on the device: ``crop_flip`` draws an independent crop and flip per
example of a whole batch in a few tensor operations (checked against
``torchvision.transforms.v2.functional`` in the tests) instead of a Python loop per image.
"""
from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Optional

import torch
from torch.utils.data import TensorDataset
from torchvision import datasets as tvd
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from .data import Splits, cache_dir
from .errors import ConfigError

# Per-channel mean and standard deviation of each training set (the usual published values).
STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
PAD = 4


def crop_flip(x: torch.Tensor, pad: int = PAD, fill: Optional[torch.Tensor] = None,
              gen: Optional[torch.Generator] = None) -> torch.Tensor:
    """A random ``pad``-pixel-padded crop and a random horizontal flip, drawn per example, of a batch
    ``x`` (N, C, H, W) on any device; ``fill`` (C,) is the padding value per channel (default 0);
    ``gen`` a generator on ``x``'s device (default: the global one)."""
    n, c, h, w = x.shape
    padded = x.new_zeros((n, c, h + 2 * pad, w + 2 * pad))
    if fill is not None:
        padded += fill.to(x.device, x.dtype).view(1, c, 1, 1)
    padded[:, :, pad:pad + h, pad:pad + w] = x
    top = torch.randint(0, 2 * pad + 1, (n,), device=x.device, generator=gen)
    left = torch.randint(0, 2 * pad + 1, (n,), device=x.device, generator=gen)
    flip = torch.rand(n, device=x.device, generator=gen) < 0.5
    # Two gathers (rows, then flipped/shifted columns): each example its own crop, no Python loop.
    rows = (torch.arange(h, device=x.device) + top[:, None]).view(n, 1, h, 1).expand(n, c, h, w + 2 * pad)
    cols = torch.arange(w, device=x.device)
    cols = (torch.where(flip[:, None], w - 1 - cols, cols) + left[:, None]).view(n, 1, 1, w).expand(n, c, h, w)
    out = padded.gather(2, rows).gather(3, cols)
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        out = out.contiguous(memory_format=torch.channels_last)
    return out


def echo_augment(mean, std):
    """Re-augments an echoed (already normalised) batch on its device: a new crop and flip of the
    view that was loaded, padded with the normalised value of black, as the CPU pipeline pads."""
    fill = -torch.tensor(mean) / torch.tensor(std)

    def augment(batch):
        x, *rest = batch
        return [crop_flip(x, PAD, fill), *rest]

    return augment


def _presence_only(cls):
    """torchvision's class with the files' MD5 check replaced by a presence check (the download
    itself is still checked against the archive's MD5), so that local copies in the official format
    -- including tiny ones written by tests -- are read as they are."""
    return type(cls.__name__, (cls,), {
        "train_list": [[f, None] for f, _ in cls.train_list],
        "test_list": [[f, None] for f, _ in cls.test_list],
        "meta": {**cls.meta, "md5": None},
    })


CLASSES = {"cifar10": (tvd.CIFAR10, 10), "cifar100": (tvd.CIFAR100, 100)}


def _missing(name: str, cls, root: Path, tried_download: Optional[BaseException]) -> ConfigError:
    folder = root / cls.base_folder
    files = ", ".join(f for f, _ in cls.train_list + cls.test_list) + ", " + cls.meta["filename"]
    why = (f"downloading {cls.url} failed ({type(tried_download).__name__}: {tried_download})"
           if tried_download else "data.download=false, so nothing was downloaded")
    return ConfigError(
        f"data set {name} was not found: echo-run looked for {folder} (files {files}) and {why}. "
        f"To fix it, on a machine with a network run `echo-run dataset={name} data.root={root}` once "
        f"(it downloads {cls.filename} there), or download {cls.url}, unpack it with "
        f"`tar -xzf {cls.filename} -C {root}` and copy {root} here; or point data.root=DIR at a "
        f"directory that holds {cls.base_folder}/.")


def load_cifar(name: str, root: Optional[str], download: bool, augment: bool) -> Splits:
    base, num_classes = CLASSES[name]
    cls = _presence_only(base)
    root = cache_dir(root)
    made = {}
    for train in (True, False):
        try:
            made[train] = cls(str(root), train=train, download=False)
            continue
        except RuntimeError:
            pass  # not there (yet)
        if not download:
            raise _missing(name, base, root, None)
        try:
            made[train] = cls(str(root), train=train, download=True)
        except (OSError, RuntimeError, EOFError, tarfile.TarError) as e:  # no network, a refusal (OSError), a bad archive
            raise _missing(name, base, root, e) from None
    mean, std = STATS[name]
    images = {t: torch.from_numpy(made[t].data).permute(0, 3, 1, 2).contiguous() for t in made}  # uint8 CHW
    labels = {t: torch.tensor(made[t].targets, dtype=torch.long) for t in made}
    normalise = lambda x: TF.normalize(TF.to_dtype(x, torch.float32, scale=True), list(mean), list(std))
    test = TensorDataset(normalise(images[False]), labels[False])
    if augment:  # uint8 images; the pipeline crops and flips each one in its workers
        train = TensorDataset(images[True], labels[True])
        transform = v2.Compose([v2.RandomCrop(32, padding=PAD), v2.RandomHorizontalFlip(),
                                v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))])
    else:
        train, transform = TensorDataset(normalise(images[True]), labels[True]), None
    return Splits(train, test, "classification",
                  {"num_classes": num_classes, "in_channels": 3, "image_size": 32, "name": name},
                  augment=echo_augment(mean, std), train_transform=transform)


def cifar10(root: Optional[str] = None, download: bool = True, augment: bool = True) -> Splits:
    """CIFAR-10: 50,000 training and 10,000 test 32x32 colour images in 10 classes."""
    return load_cifar("cifar10", root, download, augment)


def cifar100(root: Optional[str] = None, download: bool = True, augment: bool = True) -> Splits:
    """CIFAR-100: 50,000 training and 10,000 test 32x32 colour images in 100 classes."""
    return load_cifar("cifar100", root, download, augment)
