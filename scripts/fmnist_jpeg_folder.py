"""Write a decode-bound image folder for ``make advise``: Fashion-MNIST's images, upscaled and saved as
JPEG files in torchvision's ImageFolder layout (``OUT/train/<class>/*.jpg``, ``OUT/val/<class>/*.jpg``).

    python scripts/fmnist_jpeg_folder.py [--out results/advisor/fmnist-jpeg] [--size 256]
                                         [--train-per-class 600] [--val-per-class 100]

Training on it with ``dataset=image_folder data.root=OUT`` decodes a 256x256 JPEG per example in the
pipeline's workers (then RandomResizedCrop to ``data.image_size``), as an ImageNet-style pipeline
does: the loader, not the model, is the slow part on a CPU. The source is the four IDX files that
``dataset=fashion_mnist`` reads (Debian's dataset-fashion-mnist package in
/usr/share/datasets/fashion-mnist, or ``--root``), read by torchvision. The first
``--train-per-class`` training images of each class and ``--val-per-class`` test images of each class
are written; the folder is written under another name and renamed into place, and a folder already
written with the same settings is left as it is.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import torch
from torchvision.io import encode_jpeg
from torchvision.transforms.v2 import functional as TF

from runner.errors import ConfigError
from runner.mnist import KINDS, locate


def pick(targets: torch.Tensor, per_class: int) -> list:
    """The first ``per_class`` indices of every class, in the data set's order."""
    out = []
    for c in range(int(targets.max()) + 1):
        out += (targets == c).nonzero().flatten()[:per_class].tolist()
    return sorted(out)


def write_split(images: torch.Tensor, targets: torch.Tensor, classes: list, idx: list, where: Path, size: int,
                quality: int) -> int:
    for name in classes:
        (where / name).mkdir(parents=True, exist_ok=True)
    for start in range(0, len(idx), 256):  # resized in chunks: one call for many images
        chunk = idx[start:start + 256]
        big = TF.resize(images[chunk].unsqueeze(1), [size, size], antialias=True)  # N x 1 x size x size uint8
        for i, x in zip(chunk, big):
            rgb = x.expand(3, size, size).contiguous()  # decoded as an RGB photo is
            (where / classes[int(targets[i])] / f"{i:05d}.jpg").write_bytes(encode_jpeg(rgb, quality=quality).numpy().tobytes())
    return len(idx)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="results/advisor/fmnist-jpeg")
    ap.add_argument("--root", default=None, help="where the Fashion-MNIST IDX files are (default: as dataset=fashion_mnist)")
    ap.add_argument("--size", type=int, default=256, help="side of the written images in pixels")
    ap.add_argument("--train-per-class", type=int, default=600)
    ap.add_argument("--val-per-class", type=int, default=100)
    ap.add_argument("--quality", type=int, default=90)
    a = ap.parse_args(argv)
    out = Path(a.out)
    settings = {"size": a.size, "train_per_class": a.train_per_class, "val_per_class": a.val_per_class,
                "quality": a.quality}
    stamp = out / "settings.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == settings:
        print(f"fmnist_jpeg_folder: {out} is already written with these settings")
        return 0
    kind = KINDS["fashion_mnist"]
    try:
        tv_root, source = locate("fashion_mnist", kind, a.root, download=False)
    except ConfigError as e:
        print(f"fmnist_jpeg_folder: error: {e}", file=sys.stderr)
        return 2
    classes = [c.replace("/", "-") for c in kind.cls.classes]  # "T-shirt/top" is no folder name
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    n = {}
    for split, train, per in (("train", True, a.train_per_class), ("val", False, a.val_per_class)):
        ds = kind.cls(str(tv_root), train=train, download=False)
        n[split] = write_split(ds.data, ds.targets, classes, pick(ds.targets, per), tmp / split, a.size, a.quality)
    (tmp / "settings.json").write_text(json.dumps(settings))
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out)
    print(f"fmnist_jpeg_folder: wrote {n['train']} training and {n['val']} validation JPEGs of {a.size}x{a.size} "
          f"from {source} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
