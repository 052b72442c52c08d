"""The user's own images: ``data.root=DIR`` with ``DIR/train/<class>/*`` and ``DIR/val/<class>/*`` (or
``DIR/test/``), read with torchvision's ``ImageFolder`` (its class discovery, its file extensions).

Images are decoded per example, in the pipeline's workers: ``torchvision.io.decode_image`` (JPEG, PNG,
WebP, GIF), PIL for the formats it lacks (BMP, TIFF, PPM...), always to 3 channels (grayscale repeated,
alpha dropped) and 8 bits. Training with ``data.augment=true``: items are the decoded uint8 images at
their own size, and ``train_transform`` (RandomResizedCrop + horizontal flip, then normalised) is
applied by the pipeline; evaluation (and training with ``augment=false``): Resize to
``image_size / 0.875`` and CenterCrop(``image_size``) inside the data set, normalised with ImageNet's
mean and standard deviation. The helpers here also serve ``runner.hf_data``.
"""
from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Optional, Union

import torch
from torchvision.datasets import ImageFolder
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from .data import Splits
from .errors import ConfigError
from .vision import crop_flip

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet's, the usual choice for photos
CROP_RATIO = 0.875  # evaluation: resize to size / 0.875, then the central crop (224 of 256)


def decode(data: Union[bytes, torch.Tensor], name: str) -> torch.Tensor:
    """The image in ``data`` (the file's bytes) as a uint8 (3, H, W) tensor; ``name`` (its path) is
    what an error names."""
    buf = data if isinstance(data, torch.Tensor) else torch.frombuffer(bytearray(data), dtype=torch.uint8)
    try:
        x = decode_image(buf, mode=ImageReadMode.RGB)
        return TF.to_dtype(x, torch.uint8, scale=True) if x.dtype != torch.uint8 else x  # 16-bit PNG
    except RuntimeError as e:
        tv_error = re.sub(r"^.*?\.cpp:\d+, ", "", str(e)).strip()
    import numpy as np
    from PIL import Image

    try:  # formats torchvision does not decode (BMP, TIFF, ...)
        with Image.open(io.BytesIO(buf.numpy().tobytes())) as im:
            return torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1).contiguous()
    # What Pillow raises on a file that is not an image, truncated or corrupt (its own fuzzing catches these).
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as e:
        raise ConfigError(f"the image {name} could not be decoded (torchvision: {tv_error[:160]}; PIL: "
                          f"{type(e).__name__}: {str(e)[:160]}): it is corrupt, truncated or not an image. "
                          "Replace or remove the file, then run again.") from None


def decode_file(path: str) -> torch.Tensor:
    """``ImageFolder``'s loader: the file at ``path`` decoded (a module-level function, so that
    worker processes can unpickle the data set)."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(f"the image {path} could not be read ({type(e).__name__}: {e}): fix its permissions "
                          "or remove it, then run again.") from None
    return decode(data, path)


def transforms(image_size: int) -> tuple[v2.Compose, v2.Compose]:
    """(training, evaluation) transforms of a uint8 (3, H, W) image to a normalised float image."""
    finish = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)]
    train = v2.Compose([v2.RandomResizedCrop(image_size, antialias=True), v2.RandomHorizontalFlip(), *finish])
    evaluate = v2.Compose([v2.Resize(round(image_size / CROP_RATIO), antialias=True), v2.CenterCrop(image_size),
                           *finish])
    return train, evaluate


def echo_augment(image_size: int):
    """Re-augments an echoed (normalised) batch on its device: a new padded crop (an eighth of the
    side) and horizontal flip per image, padded with the normalised value of black."""
    fill = -torch.tensor(MEAN) / torch.tensor(STD)
    pad = max(1, image_size // 8)

    def augment(batch):
        x, *rest = batch
        return [crop_flip(x, pad, fill), *rest]

    return augment


def image_splits(train, test, num_classes: int, image_size: int, augment: bool, info: dict) -> Splits:
    """The ``Splits`` of two data sets of uint8 images; each has a ``transform`` attribute that its
    ``__getitem__`` applies, as torchvision's data sets do."""
    train_tf, eval_tf = transforms(image_size)
    train.transform = None if augment else eval_tf
    test.transform = eval_tf
    return Splits(train, test, "classification",
                  {"num_classes": num_classes, "in_channels": 3, "image_size": image_size, **info},
                  augment=echo_augment(image_size), train_transform=train_tf if augment else None)


def folder(path: Path, what: str) -> ImageFolder:
    """torchvision's ``ImageFolder`` over ``path``, with its errors turned into ConfigErrors."""
    if not path.is_dir():
        raise ConfigError(f"the {what} folder {path} does not exist: data.root must hold train/ and val/ (or "
                          "test/), each with one sub-folder of images per class.")
    try:
        return ImageFolder(str(path), loader=decode_file)
    except FileNotFoundError as e:  # no class folders, or no images in one of them
        raise ConfigError(f"the {what} folder {path} has no usable images: {e} Put one sub-folder of images per "
                          "class in it (e.g. train/cat/1.jpg, train/dog/2.png).") from None


def image_folder(root: Optional[str] = None, image_size: int = 64, augment: bool = True) -> Splits:
    """Images in ``root/train/<class>/`` and ``root/val/<class>/`` (or ``root/test/``); the classes are
    the train folders' names, sorted."""
    if root is None:
        raise ConfigError("dataset=image_folder needs data.root=DIR, a directory with train/ and val/ (or test/), "
                          "each with one sub-folder of images per class.")
    base = Path(root).expanduser()
    if not base.is_dir():
        raise ConfigError(f"data.root={root} is not a directory: it must hold train/ and val/ (or test/), each "
                          "with one sub-folder of images per class.")
    if image_size < 1:
        raise ConfigError(f"data.image_size={image_size} must be a positive number of pixels.")
    train = folder(base / "train", "training")
    held = next((base / s for s in ("val", "test") if (base / s).is_dir()), base / "val")
    test = folder(held, "evaluation")
    if test.classes != train.classes:
        missing = sorted(set(train.classes) - set(test.classes))
        extra = sorted(set(test.classes) - set(train.classes))
        raise ConfigError(f"the class folders of {held} differ from those of {base / 'train'}: "
                          + "; ".join(s for s in (f"missing {', '.join(missing)}" if missing else "",
                                                  f"not in train: {', '.join(extra)}" if extra else "") if s)
                          + ". Give both the same class sub-folders (an empty class has no place in either).")
    return image_splits(train, test, len(train.classes), image_size, augment,
                        {"name": "image_folder", "source": str(base), "classes": list(train.classes)})
