"""The user's own data, offline: MNIST-format IDX files (written here byte by byte, gzipped and not, read
by torchvision's own classes through the builders), image folders (PNG, JPEG, BMP, grayscale and RGBA
files written with PIL), Hugging Face data sets written with ``save_to_disk`` and as parquet, a
tokenizer trained here, and the real Fashion-MNIST files of Debian's package where they exist."""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from runner import hf_data, image_folder, mnist
from runner.errors import ConfigError

N_TRAIN, N_TEST = 12, 6
DEBIAN = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """A private echo-run cache per test (prepared IDX copies and parquet conversions land there)."""
    c = tmp_path / "cache"
    monkeypatch.setenv("ECHO_RUN_CACHE", str(c))
    return c


# --- IDX files (MNIST / Fashion-MNIST) -----------------------------------------------------------

def idx_bytes(a: np.ndarray) -> bytes:
    """The IDX format: two zero bytes, the type code 0x08 (unsigned byte), the number of dimensions,
    each dimension as a big-endian uint32, then the values."""
    return bytes([0, 0, 0x08, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.astype(np.uint8).tobytes()


def write_idx(folder: Path, rng, gz: bool, n: tuple = (N_TRAIN, N_TEST)) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    raw = {"train": (rng.integers(0, 256, (n[0], 28, 28), dtype=np.uint8), rng.integers(0, 10, n[0])),
           "t10k": (rng.integers(0, 256, (n[1], 28, 28), dtype=np.uint8), rng.integers(0, 10, n[1]))}
    for split, (x, y) in raw.items():
        for kind, a in (("images-idx3", x), ("labels-idx1", y)):
            name = folder / f"{split}-{kind}-ubyte"
            data = idx_bytes(a)
            if gz:
                with gzip.open(f"{name}.gz", "wb") as f:
                    f.write(data)
            else:
                name.write_bytes(data)
    return raw


def reference(x: np.ndarray, kind) -> torch.Tensor:
    return (torch.tensor(x, dtype=torch.float32).unsqueeze(1) / 255.0 - kind.mean) / kind.std


def test_gzipped_flat_files_are_read_by_torchvision_and_normalised(tmp_path, cache):
    raw = write_idx(tmp_path / "flat", np.random.default_rng(0), gz=True)
    s = mnist.fashion_mnist(root=str(tmp_path / "flat"), download=False, augment=False)
    kind = mnist.KINDS["fashion_mnist"]
    assert isinstance(s.train, torch.utils.data.TensorDataset) and isinstance(s.test, torch.utils.data.TensorDataset)
    x, y = s.train.tensors
    assert x.shape == (N_TRAIN, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.long
    torch.testing.assert_close(x, reference(raw["train"][0], kind))
    assert y.tolist() == raw["train"][1].tolist()
    torch.testing.assert_close(s.test.tensors[0], reference(raw["t10k"][0], kind))
    assert s.test.tensors[1].tolist() == raw["t10k"][1].tolist()
    assert s.task == "classification" and s.train_transform is None
    assert {k: s.info[k] for k in ("num_classes", "in_channels", "image_size", "name")} == \
        {"num_classes": 10, "in_channels": 1, "image_size": 28, "name": "fashion_mnist"}
    assert s.info["source"] == str(tmp_path / "flat")
    # decompressed once into the cache in torchvision's layout; a second build reuses that copy
    copies = list((cache / "idx").iterdir())
    assert len(copies) == 1 and (copies[0] / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").is_file()
    mnist.fashion_mnist(root=str(tmp_path / "flat"), download=False)
    assert list((cache / "idx").iterdir()) == copies


def test_torchvision_layout_is_read_in_place_and_flat_uncompressed_files_are_linked(tmp_path, cache):
    raw = write_idx(tmp_path / "tv" / "MNIST" / "raw", np.random.default_rng(1), gz=False)
    s = mnist.mnist(root=str(tmp_path / "tv"), download=False)
    assert s.train.tensors[1].tolist() == raw["train"][1].tolist()
    assert s.info["source"] == str(tmp_path / "tv" / "MNIST" / "raw") and not (cache / "idx").exists()
    raw = write_idx(tmp_path / "flat", np.random.default_rng(2), gz=False)
    s = mnist.mnist(root=str(tmp_path / "flat"), download=False)
    torch.testing.assert_close(s.test.tensors[0], reference(raw["t10k"][0], mnist.KINDS["mnist"]))
    linked = next((cache / "idx").iterdir()) / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    assert linked.is_symlink() and linked.resolve() == (tmp_path / "flat" / "t10k-images-idx3-ubyte").resolve()


def test_without_root_the_cache_then_the_system_directory(tmp_path, cache, monkeypatch):
    system = tmp_path / "usr-share"
    raw_sys = write_idx(system, np.random.default_rng(3), gz=True)
    kind = mnist.KINDS["fashion_mnist"]
    monkeypatch.setitem(mnist.KINDS, "fashion_mnist", dataclasses.replace(kind, system=system))
    s = mnist.fashion_mnist(download=False)
    assert s.info["source"] == str(system) and s.train.tensors[1].tolist() == raw_sys["train"][1].tolist()
    raw_cache = write_idx(cache / "FashionMNIST" / "raw", np.random.default_rng(4), gz=False)
    s = mnist.fashion_mnist(download=False)
    assert s.info["source"] == str(cache / "FashionMNIST" / "raw")
    assert s.train.tensors[1].tolist() == raw_cache["train"][1].tolist()


def test_augment_gives_uint8_items_and_a_crop_flip_transform(tmp_path):
    raw = write_idx(tmp_path / "flat", np.random.default_rng(5), gz=True)
    s = mnist.fashion_mnist(root=str(tmp_path / "flat"), download=False, augment=True)
    x, _ = s.train.tensors
    assert x.dtype == torch.uint8 and x.shape == (N_TRAIN, 1, 28, 28)
    assert torch.equal(x[:, 0], torch.from_numpy(raw["train"][0]))  # decoded, not augmented
    assert s.test.tensors[0].dtype == torch.float32  # evaluation stays normalised
    kinds = [type(t) for t in s.train_transform.transforms]
    assert kinds == [v2.RandomCrop, v2.RandomHorizontalFlip, v2.ToDtype, v2.Normalize]
    assert s.train_transform.transforms[0].padding == [2, 2, 2, 2]
    # Every output is a 2-pixel-padded crop, maybe mirrored, of the normalised image.
    kind = mnist.KINDS["fashion_mnist"]
    padded = TF.pad(x[0], [2], fill=0)
    views = [TF.crop(p, t, l, 28, 28) for p in (padded, TF.horizontal_flip(padded)) for t in range(5) for l in range(5)]
    views = [(v.float() / 255 - kind.mean) / kind.std for v in views]
    torch.manual_seed(0)
    for _ in range(8):
        out = s.train_transform(x[0])
        assert out.dtype == torch.float32 and out.shape == (1, 28, 28)
        assert any(torch.allclose(out, v, atol=1e-6) for v in views)
    # digits are never mirrored
    s = mnist.mnist(root=str(tmp_path / "flat"), download=False, augment=True)
    assert [type(t) for t in s.train_transform.transforms] == [v2.RandomCrop, v2.ToDtype, v2.Normalize]


def test_echo_augment_recrops_on_the_device_and_never_flips_digits(tmp_path):
    write_idx(tmp_path / "flat", np.random.default_rng(6), gz=True)
    s = mnist.mnist(root=str(tmp_path / "flat"), download=False)
    x, y = s.train.tensors
    black = -mnist.KINDS["mnist"].mean / mnist.KINDS["mnist"].std
    torch.manual_seed(0)
    out, y2 = s.augment([x, y])
    assert torch.equal(y2, y) and out.shape == x.shape
    for i in range(len(x)):
        padded = torch.nn.functional.pad(x[i], (2, 2, 2, 2), value=black)
        shifts = [padded[:, t:t + 28, l:l + 28] for t in range(5) for l in range(5)]
        assert any(torch.equal(out[i], v) for v in shifts)  # a crop, never a mirror image
    s = mnist.fashion_mnist(root=str(tmp_path / "flat"), download=False)
    assert s.augment([s.train.tensors[0], y])[0].shape == x.shape


def test_missing_files_name_where_it_looked_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setitem(mnist.KINDS, "fashion_mnist",
                        dataclasses.replace(mnist.KINDS["fashion_mnist"], system=tmp_path / "no-system"))
    with pytest.raises(ConfigError) as e:
        mnist.fashion_mnist(download=False)
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path / "cache") in msg and str(tmp_path / "no-system") in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "data.root=DIR" in msg
    assert "train-images-idx3-ubyte" in msg and "data.download=false" in msg
    with pytest.raises(ConfigError, match=r"looked in .*empty.*`echo-run dataset=mnist data.root=.*empty`"):
        (tmp_path / "empty").mkdir()
        mnist.mnist(root=str(tmp_path / "empty"), download=False)


@pytest.fixture
def mirror(tmp_path):
    """An HTTP server on the loopback interface serving a directory: a download mirror without a network."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    folder = tmp_path / "mirror"
    folder.mkdir()
    quiet = type("Quiet", (SimpleHTTPRequestHandler,), {"log_message": lambda *a: None})
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def test_download_uses_torchvision_and_its_failure_is_the_same_error(tmp_path, monkeypatch, mirror):
    folder, url = mirror
    raw = write_idx(folder, np.random.default_rng(7), gz=True)
    resources = [(f"{n}.gz", hashlib.md5((folder / f"{n}.gz").read_bytes()).hexdigest()) for n in mnist.FILES]
    cls = mnist.KINDS["fashion_mnist"].cls
    monkeypatch.setattr(cls, "mirrors", [url])  # torchvision's own download: fetch, MD5 check, gunzip
    monkeypatch.setattr(cls, "resources", resources)
    s = mnist.fashion_mnist(root=str(tmp_path / "dl"), download=True)
    assert s.info["source"] == str(tmp_path / "dl" / "FashionMNIST" / "raw")
    assert s.train.tensors[1].tolist() == raw["train"][1].tolist()
    monkeypatch.setattr(cls, "mirrors", [url + "missing/"])  # what an unreachable mirror looks like
    with pytest.raises(ConfigError, match=r"downloading them with torchvision failed \(RuntimeError: Error "
                                          r"downloading train-images.*apt-get install dataset-fashion-mnist"):
        mnist.fashion_mnist(root=str(tmp_path / "dl2"), download=True)


def test_a_corrupt_idx_file_is_a_config_error(tmp_path):
    write_idx(tmp_path / "flat", np.random.default_rng(8), gz=False)
    (tmp_path / "flat" / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08")
    with pytest.raises(ConfigError, match=r"IDX files in .*flat could not be read by torchvision"):
        mnist.mnist(root=str(tmp_path / "flat"), download=False)


@pytest.mark.skipif(not DEBIAN.is_dir(), reason="Debian's dataset-fashion-mnist package is not installed")
def test_the_real_fashion_mnist_of_debians_package(cache):
    s = mnist.fashion_mnist(download=False)  # no root: the (empty) cache, then the system directory
    assert s.info["source"] == str(DEBIAN)
    (x, y), (xt, yt) = s.train.tensors, s.test.tensors
    assert (len(y), len(yt)) == (60_000, 10_000) and x.shape == (60_000, 1, 28, 28)
    assert int(y.min()) == 0 and int(y.max()) == 9
    # Fashion-MNIST is balanced: 6,000 training and 1,000 test images per class
    assert torch.bincount(y).tolist() == [6000] * 10 and torch.bincount(yt).tolist() == [1000] * 10
    assert abs(float(x.mean())) < 1e-3 and abs(float(x.std()) - 1) < 1e-3  # the published statistics


# --- image folders -------------------------------------------------------------------------------

def write_image(path: Path, a: np.ndarray, fmt: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path, fmt, **({"quality": 95} if fmt == "JPEG" else {}))


def image_tree(root: Path, rng) -> dict:
    """train/{cat,dog}/ and val/{cat,dog}/ with PNG (RGB, grayscale, RGBA), JPEG and BMP files of
    different sizes; returns {relative path: the array written}."""
    written = {}
    specs = [("train/cat/a.png", (10, 12, 3), "PNG"), ("train/cat/b.png", (9, 9), "PNG"),
             ("train/cat/c.bmp", (8, 11, 3), "BMP"), ("train/dog/d.png", (12, 10, 4), "PNG"),
             ("train/dog/e.jpg", (16, 16, 3), "JPEG"), ("val/cat/f.png", (10, 10, 3), "PNG"),
             ("val/dog/g.png", (11, 13, 3), "PNG")]
    for rel, shape, fmt in specs:
        a = rng.integers(0, 256, shape, dtype=np.uint8)
        write_image(root / rel, a, fmt)
        written[rel] = a
    return written


def as_rgb_chw(a: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(a)
    if t.dim() == 2:
        t = t.unsqueeze(-1).expand(*t.shape, 3)  # grayscale repeated
    return t[..., :3].permute(2, 0, 1)  # alpha dropped


def eval_reference(img: torch.Tensor, size: int) -> torch.Tensor:
    x = TF.center_crop(TF.resize(img, [round(size / 0.875)], antialias=True), [size])
    return TF.normalize(x.float() / 255, list(image_folder.MEAN), list(image_folder.STD))


def test_image_folder_decodes_every_file_exactly(tmp_path):
    written = image_tree(tmp_path / "imgs", np.random.default_rng(0))
    s = image_folder.image_folder(root=str(tmp_path / "imgs"), image_size=8, augment=True)
    assert s.info["classes"] == ["cat", "dog"] and s.info["num_classes"] == 2 and s.info["in_channels"] == 3
    assert (len(s.train), len(s.test)) == (5, 2)
    for (path, label), i in zip(s.train.samples, range(len(s.train))):
        rel = Path(path).relative_to(tmp_path / "imgs").as_posix()
        x, y = s.train[i]
        assert y == ["cat", "dog"].index(rel.split("/")[1])
        assert x.dtype == torch.uint8 and x.shape[0] == 3  # decoded at its own size, not augmented
        if rel.endswith(".jpg"):  # lossy: agree with PIL's decoding of the same file
            pil = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)
            assert (x.int() - pil.int()).abs().max() <= 3
        else:  # PNG (RGB, grayscale, RGBA) through torchvision, BMP through PIL: exact
            assert torch.equal(x, as_rgb_chw(written[rel])), rel


def test_image_folder_transforms(tmp_path):
    written = image_tree(tmp_path / "imgs", np.random.default_rng(1))
    s = image_folder.image_folder(root=str(tmp_path / "imgs"), image_size=8, augment=True)
    # evaluation: resize + centre crop + ImageNet normalisation, inside the test set
    x, y = s.test[0]
    assert x.shape == (3, 8, 8) and x.dtype == torch.float32 and y == 0
    torch.testing.assert_close(x, eval_reference(as_rgb_chw(written["val/cat/f.png"]), 8), atol=1e-5, rtol=0)
    assert [type(t) for t in s.train_transform.transforms] == \
        [v2.RandomResizedCrop, v2.RandomHorizontalFlip, v2.ToDtype, v2.Normalize]
    out = s.train_transform(s.train[0][0])
    assert out.shape == (3, 8, 8) and out.dtype == torch.float32
    # augment=false: no random transform; training items go through the evaluation transform
    s = image_folder.image_folder(root=str(tmp_path / "imgs"), image_size=8, augment=False)
    assert s.train_transform is None
    torch.testing.assert_close(s.train[0][0], eval_reference(as_rgb_chw(written["train/cat/a.png"]), 8),
                               atol=1e-5, rtol=0)
    # the data sets travel to worker processes
    again = pickle.loads(pickle.dumps(s.test))
    torch.testing.assert_close(again[1][0], s.test[1][0])
    # echoed batches are re-cropped on the device with an eighth of the side as padding
    batch = torch.stack([s.test[i][0] for i in range(2)])
    assert s.augment([batch, torch.tensor([0, 1])])[0].shape == (2, 3, 8, 8)


def test_image_folder_uses_test_when_there_is_no_val(tmp_path):
    image_tree(tmp_path / "imgs", np.random.default_rng(2))
    (tmp_path / "imgs" / "val").rename(tmp_path / "imgs" / "test")
    s = image_folder.image_folder(root=str(tmp_path / "imgs"), image_size=8)
    assert len(s.test) == 2 and Path(s.test.root) == tmp_path / "imgs" / "test"


def test_image_folder_bad_input_names_the_path(tmp_path):
    root = tmp_path / "imgs"
    with pytest.raises(ConfigError, match=r"data.root=.*imgs is not a directory"):
        image_folder.image_folder(root=str(root))
    with pytest.raises(ConfigError, match="needs data.root=DIR"):
        image_folder.image_folder()
    (root / "train").mkdir(parents=True)
    with pytest.raises(ConfigError, match=rf"training folder {root / 'train'} has no usable images.*class folder"):
        image_folder.image_folder(root=str(root))
    image_tree(root, np.random.default_rng(3))
    (root / "train" / "bird").mkdir()  # a class folder without images
    with pytest.raises(ConfigError, match=rf"training folder {root / 'train'} has no usable images.*bird"):
        image_folder.image_folder(root=str(root))
    write_image(root / "train" / "bird" / "h.png", np.zeros((4, 4, 3), np.uint8), "PNG")
    with pytest.raises(ConfigError, match=rf"class folders of {root / 'val'} differ from those of "
                                          rf"{root / 'train'}: missing bird"):
        image_folder.image_folder(root=str(root))
    (root / "train" / "bird" / "h.png").unlink()
    (root / "train" / "bird").rmdir()
    import shutil

    shutil.rmtree(root / "val")
    with pytest.raises(ConfigError, match=rf"evaluation folder {root / 'val'} does not exist"):
        image_folder.image_folder(root=str(root))


def test_a_corrupt_image_fails_when_decoded_naming_the_file(tmp_path):
    image_tree(tmp_path / "imgs", np.random.default_rng(4))
    bad = tmp_path / "imgs" / "train" / "dog" / "e.jpg"
    bad.write_bytes(bad.read_bytes()[:100])  # truncated
    s = image_folder.image_folder(root=str(tmp_path / "imgs"), image_size=8)  # building does not decode
    i = [p for p, _ in s.train.samples].index(str(bad))
    s.train[i - 1]
    with pytest.raises(ConfigError, match=rf"the image {bad} could not be decoded .*Replace or remove the file"):
        s.train[i]


# --- Hugging Face data sets ----------------------------------------------------------------------

def png_bytes(a: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


def hf_images(n: int, rng) -> tuple:
    arrays = [rng.integers(0, 256, (6 + i % 3, 7, 3), dtype=np.uint8) for i in range(n)]
    return arrays, [i % 3 for i in range(n)]


def test_hf_save_to_disk_dataset_dict_with_class_labels(tmp_path):
    import datasets

    arrays, labels = hf_images(9, np.random.default_rng(0))
    feats = datasets.Features({"img": datasets.Image(), "y": datasets.ClassLabel(names=["ant", "bee", "cow"]),
                               "note": datasets.Value("string")})
    rows = {"img": [{"bytes": png_bytes(a), "path": None} for a in arrays], "y": labels, "note": ["x"] * 9}
    full = datasets.Dataset.from_dict(rows, features=feats)
    datasets.DatasetDict(train=full.select(range(6)), test=full.select(range(6, 9))).save_to_disk(tmp_path / "dd")
    s = hf_data.hf(path=str(tmp_path / "dd"), image_column="img", label_column="y", image_size=4)
    assert s.info["classes"] == ["ant", "bee", "cow"] and s.info["num_classes"] == 3
    assert s.info["test_split"] == "test" and (len(s.train), len(s.test)) == (6, 3)
    for i in range(6):
        x, y = s.train[i]
        assert x.dtype == torch.uint8 and torch.equal(x, torch.from_numpy(arrays[i]).permute(2, 0, 1))
        assert int(y) == labels[i]
    x, y = s.test[0]
    torch.testing.assert_close(x, eval_reference(torch.from_numpy(arrays[6]).permute(2, 0, 1), 4), atol=1e-5, rtol=0)
    assert int(y) == labels[6] and s.train_transform is not None
    again = pickle.loads(pickle.dumps(s.train))  # travels to worker processes
    assert torch.equal(again[2][0], s.train[2][0])
    with pytest.raises(ConfigError, match=r"no column 'image' \(data.image_column\): its columns are img, y, note"):
        hf_data.hf(path=str(tmp_path / "dd"), label_column="y")
    with pytest.raises(ConfigError, match=r"no column 'label' \(data.label_column\): its columns are img, y, note"):
        hf_data.hf(path=str(tmp_path / "dd"), image_column="img")
    with pytest.raises(ConfigError, match=r"column 'y' .* holds ClassLabel.*not images"):
        hf_data.hf(path=str(tmp_path / "dd"), image_column="y", label_column="y")
    # a column of strings is one of file paths: a missing file is named when it is read
    s = hf_data.hf(path=str(tmp_path / "dd"), image_column="note", label_column="y")
    with pytest.raises(ConfigError, match=rf"the image {tmp_path / 'dd' / 'x'} .*could not be read"):
        s.train[0]


def test_hf_single_dataset_gets_a_fixed_split(tmp_path):
    import datasets

    arrays, labels = hf_images(20, np.random.default_rng(1))
    feats = datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")})
    rows = {"image": [{"bytes": png_bytes(a), "path": None} for a in arrays], "label": labels}
    datasets.Dataset.from_dict(rows, features=feats).save_to_disk(tmp_path / "one")
    a = hf_data.hf(path=str(tmp_path / "one"), test_fraction=0.25, split_seed=3, image_size=4)
    assert (len(a.train), len(a.test)) == (15, 5) and a.info["test_split"] == "0.25 of train (split_seed=3)"
    assert a.info["classes"] == ["0", "1", "2"]  # the distinct values of a plain integer column
    encoded = [png_bytes(arr) for arr in arrays]
    def row(x: torch.Tensor) -> int:  # which written image a decoded training item is
        return next(j for j, arr in enumerate(arrays) if torch.equal(x, torch.from_numpy(arr).permute(2, 0, 1)))

    train_rows = sorted(row(a.train[i][0]) for i in range(15))
    test_rows = sorted(encoded.index(a.test.ds[i]["image"]["bytes"]) for i in range(5))
    assert sorted(train_rows + test_rows) == list(range(20))  # a partition of the rows
    b = hf_data.hf(path=str(tmp_path / "one"), test_fraction=0.25, split_seed=3, image_size=4)
    c = hf_data.hf(path=str(tmp_path / "one"), test_fraction=0.25, split_seed=4, image_size=4)
    rows = lambda s: sorted(encoded.index(s.test.ds[i]["image"]["bytes"]) for i in range(5))  # noqa: E731
    assert rows(b) == test_rows and rows(c) != test_rows  # fixed by split_seed alone


def test_hf_parquet_directory_with_string_labels_and_validation(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(2)
    arrays = [rng.integers(0, 256, (5, 5, 3), dtype=np.uint8) for _ in range(8)]
    names = ["dog", "cat", "dog", "emu", "cat", "emu", "dog", "cat"]
    (tmp_path / "pq").mkdir()
    pq.write_table(pa.table({"bytes": [png_bytes(a) for a in arrays[:6]], "kind": names[:6]}),
                   tmp_path / "pq" / "train-00000-of-00001.parquet")
    pq.write_table(pa.table({"bytes": [png_bytes(a) for a in arrays[6:]], "kind": names[6:]}),
                   tmp_path / "pq" / "validation-00000-of-00001.parquet")
    s = hf_data.hf(path=str(tmp_path / "pq"), image_column="bytes", label_column="kind", image_size=4, augment=False)
    assert s.info["classes"] == ["cat", "dog", "emu"] and s.info["test_split"] == "validation"
    assert [int(s.train[i][1]) for i in range(6)] == [1, 0, 1, 2, 0, 2]
    torch.testing.assert_close(s.test[1][0], eval_reference(torch.from_numpy(arrays[7]).permute(2, 0, 1), 4),
                               atol=1e-5, rtol=0)
    pq.write_table(pa.table({"bytes": [png_bytes(arrays[0])], "kind": ["yak"]}),
                   tmp_path / "pq" / "validation-00000-of-00001.parquet")
    with pytest.raises(ConfigError, match=r"labels 'yak' in column 'kind' that are not classes"):
        hf_data.hf(path=str(tmp_path / "pq"), image_column="bytes", label_column="kind")


def test_hf_paths_that_do_not_hold_a_data_set(tmp_path):
    with pytest.raises(ConfigError, match=r"data.path=.*nowhere is not a directory"):
        hf_data.hf(path=str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"holds neither a data set saved with save_to_disk .* nor parquet"):
        hf_data.hf(path=str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="needs data.path=DIR"):
        hf_data.hf()


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> Path:
    """A byte-level BPE trained here with `tokenizers`, saved as transformers saves a tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(TEXT, trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                      show_progress=False))
    d = tmp_path_factory.mktemp("tok")
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>").save_pretrained(d)
    return d


TEXT = ["The quick brown fox jumps over the lazy dog. ", "Data echoing reuses batches. ",
        "Pack my box with five dozen liquor jugs. ", "How vexingly quick daft zebras jump! "] * 6


def test_hf_language_tokenises_the_text_column_into_blocks(tmp_path, tokenizer_dir):
    import datasets
    from transformers import AutoTokenizer

    datasets.DatasetDict(train=datasets.Dataset.from_dict({"body": TEXT[:20], "n": list(range(20))}),
                         validation=datasets.Dataset.from_dict({"body": TEXT[20:], "n": list(range(4))})
                         ).save_to_disk(tmp_path / "text")
    s = hf_data.hf(path=str(tmp_path / "text"), task="language", text_column="body", tokenizer=str(tokenizer_dir),
                   block_size=8)
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    ids = [i for t in TEXT[:20] for i in tok(t, add_special_tokens=False)["input_ids"]]
    n = (len(ids) - 1) // 8
    x, y = s.train.tensors
    assert s.task == "language" and x.shape == (n, 8) and x.dtype == torch.long
    assert x.flatten().tolist() == ids[:n * 8] and y.flatten().tolist() == ids[1:n * 8 + 1]
    assert s.info["vocab_size"] == len(tok) and s.info["block_size"] == 8 and s.info["test_split"] == "validation"
    assert len(s.test) == (len([i for t in TEXT[20:] for i in tok(t, add_special_tokens=False)["input_ids"]]) - 1) // 8
    # one Dataset: a fixed split of the token blocks (they do not overlap: no token in both)
    datasets.Dataset.from_dict({"body": TEXT}).save_to_disk(tmp_path / "one")
    one = hf_data.hf(path=str(tmp_path / "one"), task="language", text_column="body", tokenizer=str(tokenizer_dir),
                     block_size=8, test_fraction=0.25, split_seed=1)
    ids = [i for t in TEXT for i in tok(t, add_special_tokens=False)["input_ids"]]
    every = torch.tensor(ids[:(len(ids) - 1) // 8 * 8]).view(-1, 8)
    got = torch.cat([one.train.tensors[0], one.test.tensors[0]])
    assert len(one.test) == round(len(every) * 0.25) and len(got) == len(every)
    assert sorted(map(tuple, got.tolist())) == sorted(map(tuple, every.tolist()))  # a partition of the blocks
    assert one.info["test_split"] == "0.25 of train (split_seed=1)"
    with pytest.raises(ConfigError, match=r"no column 'text' \(data.text_column\): its columns are body, n"):
        hf_data.hf(path=str(tmp_path / "text"), task="language", tokenizer=str(tokenizer_dir))
    with pytest.raises(ConfigError, match=r"column 'n' .* not text"):
        hf_data.hf(path=str(tmp_path / "text"), task="language", text_column="n", tokenizer=str(tokenizer_dir))
    with pytest.raises(ConfigError, match=r"needs data.tokenizer=DIR.*save_pretrained"):
        hf_data.hf(path=str(tmp_path / "text"), task="language", text_column="body", tokenizer=str(tmp_path / "no"))
    with pytest.raises(ConfigError, match=r"data.task='translation' is not a task"):
        hf_data.hf(path=str(tmp_path / "text"), task="translation")
