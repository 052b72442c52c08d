"""CIFAR-10 and CIFAR-100 through ``torchvision.datasets``: the official train/test splits, the
standard augmentation (random crop with 4-pixel padding, horizontal flip) and per-channel
normalisation, plus the same augmentation on the device for echoed batches (``data.augment_on_echo``).

torchvision's transforms draw one crop per call, so a batch would need a Python loop per example
(hundreds of microseconds each on a CPU core). ``crop_flip`` draws an independent crop and flip per
example in a few tensor operations and is checked against ``torchvision.transforms.v2.functional``
in the tests; the data set serves whole batches through ``__getitems__`` as DataLoader does.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import List, Optional, Tuple

import torch
from torch.utils.data import Dataset
from torchvision import datasets as tvd
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


class CifarSet(Dataset):
    """A CIFAR split held as one uint8 tensor (N, 3, 32, 32); items are normalised float images,
    randomly cropped and flipped when ``augment``."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, mean, std, augment: bool):
        self.images, self.targets, self.augment = images, targets, augment
        self.mean, self.std = list(mean), list(std)

    def __len__(self) -> int:
        return len(self.targets)

    def batch(self, idx: List[int]) -> Tuple[torch.Tensor, torch.Tensor]:
        x = self.images[idx]
        if self.augment:
            # Seeded by the batch's indices (in order), not a shared generator: the same batch gets the
            # same views whichever thread loads it and after a resume, and epochs reshuffle the order.
            seed = int.from_bytes(hashlib.blake2b(torch.tensor(idx).numpy().tobytes(), digest_size=8).digest(), "little")
            # on the uint8 pixels, so the padding is black as in torchvision's RandomCrop
            x = crop_flip(x, gen=torch.Generator().manual_seed(seed))
        x = TF.to_dtype(x, torch.float32, scale=True)
        return TF.normalize(x, self.mean, self.std), self.targets[idx]

    def __getitems__(self, idx: List[int]) -> list:
        x, y = self.batch(list(idx))
        return list(zip(x, y))

    def __getitem__(self, i: int):
        x, y = self.batch([i])
        return x[0], y[0]


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
        except Exception as e:  # no network, a proxy refusing, a truncated archive...
            raise _missing(name, base, root, e) from None
    mean, std = STATS[name]

    def split(ds, augment: bool) -> CifarSet:
        images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # HWC -> CHW, uint8
        return CifarSet(images, torch.tensor(ds.targets, dtype=torch.long), mean, std, augment)

    return Splits(split(made[True], augment), split(made[False], False), "classification",
                  {"num_classes": num_classes, "in_channels": 3, "image_size": 32, "name": name},
                  augment=echo_augment(mean, std))


def cifar10(root: Optional[str] = None, download: bool = True, augment: bool = True) -> Splits:
    """CIFAR-10: 50,000 training and 10,000 test 32x32 colour images in 10 classes."""
    return load_cifar("cifar10", root, download, augment)


def cifar100(root: Optional[str] = None, download: bool = True, augment: bool = True) -> Splits:
    """CIFAR-100: 50,000 training and 10,000 test 32x32 colour images in 100 classes."""
    return load_cifar("cifar100", root, download, augment)
