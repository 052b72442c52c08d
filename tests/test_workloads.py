"""The paper's workloads, offline: CIFAR-10/100 and WikiText-2 read from tiny files written here in
the real on-disk formats, GPT-2's tokenizer built here, the models' shapes, and the errors a user
without the data gets."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from runner import data, models, vision
from runner.schema import ConfigError
from tests.conftest import cli, make_cfg, read_records, run_inproc

N_TRAIN, N_TEST = 40, 20
LINES = [" = Valkyria Chronicles III = \n", "", " Senjō no Valkyria 3 : Unrecorded Chronicles is a tactical "
         "role @-@ playing video game developed by Sega and Media.Vision for the PlayStation Portable . \n",
         " The game began development in 2010 , carrying over a large portion of the work done on "
         "Valkyria Chronicles II . \n"]


def write_cifar(root: Path, rng) -> dict:
    """CIFAR-10 and CIFAR-100 as their python pickles (the layout torchvision's download unpacks)."""
    raw = {}
    c10 = root / "cifar-10-batches-py"
    c10.mkdir(parents=True)
    per = N_TRAIN // 5
    x_tr = rng.integers(0, 256, (N_TRAIN, 3072), dtype=np.uint8)
    y_tr = rng.integers(0, 10, N_TRAIN).tolist()
    for k in range(5):
        sl = slice(k * per, (k + 1) * per)
        with open(c10 / f"data_batch_{k + 1}", "wb") as f:
            pickle.dump({"batch_label": f"training batch {k + 1} of 5", "labels": y_tr[sl], "data": x_tr[sl],
                         "filenames": [f"img{i}.png" for i in range(per)]}, f)
    x_te, y_te = rng.integers(0, 256, (N_TEST, 3072), dtype=np.uint8), rng.integers(0, 10, N_TEST).tolist()
    with open(c10 / "test_batch", "wb") as f:
        pickle.dump({"batch_label": "testing batch 1 of 1", "labels": y_te, "data": x_te, "filenames": []}, f)
    with open(c10 / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)], "num_cases_per_batch": per, "num_vis": 3072}, f)
    raw["cifar10"] = (x_tr, y_tr, x_te, y_te)

    c100 = root / "cifar-100-python"
    c100.mkdir()
    x_tr, x_te = rng.integers(0, 256, (N_TRAIN, 3072), dtype=np.uint8), rng.integers(0, 256, (N_TEST, 3072), dtype=np.uint8)
    y_tr, y_te = rng.integers(0, 100, N_TRAIN).tolist(), rng.integers(0, 100, N_TEST).tolist()
    for name, x, y in (("train", x_tr, y_tr), ("test", x_te, y_te)):
        with open(c100 / name, "wb") as f:
            pickle.dump({"filenames": [], "batch_label": name, "fine_labels": y,
                         "coarse_labels": [v // 5 for v in y], "data": x}, f)
    with open(c100 / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"f{i}" for i in range(100)],
                     "coarse_label_names": [f"c{i}" for i in range(20)]}, f)
    raw["cifar100"] = (x_tr, y_tr, x_te, y_te)
    return raw


def write_wikitext(root: Path) -> Path:
    """WikiText-2 in the hub's parquet layout, and a GPT-2-style byte-level BPE tokenizer
    (vocab.json + merges.txt, what GPT-2's tokenizer directory holds) trained on it."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tokenizers import ByteLevelBPETokenizer

    wt = root / "wikitext-2-raw-v1"
    wt.mkdir(parents=True)
    for split, n in (("train", 60), ("validation", 8), ("test", 16)):
        pq.write_table(pa.table({"text": [LINES[i % len(LINES)] for i in range(n)]}),
                       wt / f"{split}-00000-of-00001.parquet")
    tok = ByteLevelBPETokenizer()
    tok.train_from_iterator(LINES, vocab_size=320, special_tokens=["<|endoftext|>"], show_progress=False)
    tdir = root / "gpt2"
    tdir.mkdir()
    tok.save_model(str(tdir))
    return tdir


@pytest.fixture(scope="module")
def offline(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    raw = write_cifar(root, np.random.default_rng(0))
    tdir = write_wikitext(root)
    return root, raw, tdir


def hf_env(tmp: Path) -> dict:
    """No network for Hugging Face and no writes to the user's cache."""
    return {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp / "hf")}


def normalised(raw_rows: np.ndarray, name: str) -> torch.Tensor:
    """The reference: uint8 rows (N, 3072, channel-major) -> (N, 3, 32, 32) floats, normalised."""
    mean, std = vision.STATS[name]
    x = torch.tensor(raw_rows, dtype=torch.float32).reshape(-1, 3, 32, 32) / 255.0
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


@pytest.mark.parametrize("name, classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_reads_the_official_format(offline, name, classes):
    root, raw, _ = offline
    s = data.build(make_cfg(f"dataset={name}", f"data.root={root}", "data.download=false", "data.augment=false").data)
    x_tr, y_tr, x_te, y_te = raw[name]
    assert (len(s.train), len(s.test), s.info["num_classes"], s.info["in_channels"]) == (N_TRAIN, N_TEST, classes, 3)
    x, y = _fetch(s.train)
    assert torch.allclose(x, normalised(x_tr, name), atol=1e-5) and y.tolist() == y_tr
    x, y = _fetch(s.test)
    assert torch.allclose(x, normalised(x_te, name), atol=1e-5) and y.tolist() == y_te


def _fetch(ds):
    return ds.tensors


def crop_flip_of(out: torch.Tensor, src: torch.Tensor, fill: torch.Tensor) -> bool:
    """Whether ``out`` is one of the 9 x 9 x 2 padded crops / flips of ``src`` (torchvision's own
    pad, crop and horizontal flip are the reference)."""
    padded = TF.pad(src - fill.view(3, 1, 1), [4]) + fill.view(3, 1, 1)
    for top in range(9):
        for left in range(9):
            view = TF.crop(padded, top, left, 32, 32)
            if torch.allclose(out, view, atol=1e-6) or torch.allclose(out, TF.horizontal_flip(view), atol=1e-6):
                return True
    return False


def _views(s, epoch: int = 0):
    """The training set's views in epoch ``epoch``, as the pipeline draws them (one seeded draw per
    example, by seed, epoch and index)."""
    from runner.pipeline import Examples

    ex = Examples(s.train, s.train_transform, seed=0)
    items = [ex.example((epoch, i)) for i in range(len(s.train))]
    return torch.stack([x for x, _ in items]), torch.stack([y for _, y in items])


def test_cifar_augmentation_is_a_padded_crop_and_flip_per_example(offline):
    root, raw, _ = offline
    s = data.build(make_cfg("dataset=cifar10", f"data.root={root}", "data.download=false").data)
    assert s.train.tensors[0].dtype == torch.uint8  # decoded, not augmented: the pipeline augments
    x, y = _views(s)
    ref = normalised(raw["cifar10"][0], "cifar10")
    mean, std = vision.STATS["cifar10"]
    black = -torch.tensor(mean) / torch.tensor(std)  # torchvision pads with 0 before normalising
    assert all(crop_flip_of(x[i], ref[i], black) for i in range(N_TRAIN))
    # Independent draws per example: all 40 left untouched has probability (1/162)^40.
    assert sum(torch.allclose(x[i], ref[i], atol=1e-6) for i in range(N_TRAIN)) < N_TRAIN // 2
    assert torch.equal(x, _views(s)[0])  # views depend on (seed, epoch, index) only: exact after a resume
    assert not torch.equal(x, _views(s, epoch=1)[0])  # and each epoch draws new ones
    assert y.tolist() == raw["cifar10"][1]


def test_augment_on_echo_recrops_the_loaded_view(offline):
    root, raw, _ = offline
    s = data.build(make_cfg("dataset=cifar10", f"data.root={root}", "data.download=false").data)
    x, y = _views(s)
    torch.manual_seed(0)
    x2, y2 = s.augment([x, y])
    mean, std = vision.STATS["cifar10"]
    black = -torch.tensor(mean) / torch.tensor(std)
    assert torch.equal(y2, y) and x2.shape == x.shape
    assert all(crop_flip_of(x2[i], x[i], black) for i in range(N_TRAIN))
    assert not torch.equal(x2, x)


@pytest.mark.slow
def test_cifar_trains_through_echo_run(offline, tmp_path):
    root, _, _ = offline
    out = cli(f"hydra.sweep.dir={tmp_path}", "dataset=cifar10,cifar100", f"data.root={root}",
              "data.download=false", "model=cnn", "data.batch_size=8", "budget.steps=3", "eval.every_loads=null",
              "schedule=constant", "schedule.p=0.5", "data.augment_on_echo=true", "train.threads=1", "-m")
    assert out.returncode == 0, out.stderr
    runs = sorted(p.parent for p in tmp_path.rglob("summary.json"))
    assert len(runs) == 2
    for run in runs:
        recs = read_records(run)
        assert [r["step"] for r in recs] == [0, 3]
        assert recs[-1]["example_loads"] == 8 * (3 - recs[-1]["echo_steps"])
        assert recs[-1]["test_acc"] * N_TEST == pytest.approx(round(recs[-1]["test_acc"] * N_TEST))  # 20 test images
        assert json.loads((run / "summary.json").read_text())["status"] == "complete"


def test_wikitext2_reads_parquet_and_tokenises_with_gpt2_tokenizer(offline, monkeypatch, tmp_path):
    import datasets
    from tokenizers import ByteLevelBPETokenizer

    root, _, tdir = offline
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf")
    s = data.build(make_cfg("dataset=wikitext2", f"data.root={root}", f"data.tokenizer={tdir}",
                            "data.block_size=8", "data.download=false").data)
    # The reference: the `tokenizers` library on the same vocab.json / merges.txt, line by line.
    ref = ByteLevelBPETokenizer(str(tdir / "vocab.json"), str(tdir / "merges.txt"))
    ids = [i for k in range(60) for i in ref.encode(LINES[k % len(LINES)]).ids]
    n = (len(ids) - 1) // 8
    x, y = s.train.tensors
    assert x.shape == (n, 8) and x.flatten().tolist() == ids[:n * 8] and y.flatten().tolist() == ids[1:n * 8 + 1]
    assert s.info["vocab_size"] == ref.get_vocab_size() and s.task == "language"
    test_ids = [i for k in range(16) for i in ref.encode(LINES[k % len(LINES)]).ids]
    assert s.test.tensors[0].flatten().tolist() == test_ids[:len(s.test) * 8]


def test_wikitext2_trains_through_the_loop(offline, tmp_path, monkeypatch):
    import datasets

    root, _, tdir = offline
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf")  # not the user's cache
    # data.tokenizer=gpt2 is found as <data.root>/gpt2, the tokenizer directory written above.
    recs, summary = run_inproc(tmp_path / "run", "dataset=wikitext2", f"data.root={root}", "data.download=false",
                               "model.size=tiny", "data.block_size=16", "data.batch_size=4", "budget.steps=2",
                               "eval.every_loads=null")
    assert [r["step"] for r in recs] == [0, 2] and summary["status"] == "complete"
    assert 1 < recs[-1]["test_ppl"] < 2 * 311  # about the vocabulary size for an untrained model


@pytest.mark.slow
def test_missing_data_exits_2_with_where_it_looked_and_the_fix(tmp_path):
    """Each data set, as a user meets it: three echo-run processes at once (they only start up)."""
    import os
    import subprocess

    from tests.conftest import ECHO_RUN, ROOT

    empty = tmp_path / "empty"
    empty.mkdir()
    says = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python", "wikitext2": "wikitext-2-raw-v1"}
    env = dict(os.environ, OMP_NUM_THREADS="1", **hf_env(tmp_path))
    procs = {name: subprocess.Popen([*ECHO_RUN, f"hydra.run.dir={tmp_path / name}", f"dataset={name}",
                                     f"data.root={empty}", "data.download=false"], cwd=ROOT, env=env, text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE) for name in says}
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 2, err
        assert f"data set {name} was not found" in err and str(empty / says[name]) in err and "To fix it" in err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1  # one paragraph
        # Nothing left behind: the same command starts afresh once the files are there.
        assert not (tmp_path / name).exists()


def test_no_network_turns_a_failed_download_into_the_same_error(tmp_path, monkeypatch):
    # A URL nothing listens on: the download fails at once, as it does without a network.
    monkeypatch.setattr(vision.tvd.CIFAR10, "url", "http://127.0.0.1:9/cifar-10-python.tar.gz")
    with pytest.raises(ConfigError, match=r"data set cifar10 was not found: .*downloading http://127.0.0.1:9"):
        data.build(make_cfg("dataset=cifar10", f"data.root={tmp_path}").data)


def test_missing_tokenizer_names_it_and_the_fix(offline, tmp_path, monkeypatch):
    import datasets

    root, _, _ = offline
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf")
    cfg = make_cfg("dataset=wikitext2", f"data.root={root}", "data.download=false", "data.tokenizer=no-such-tokenizer")
    with pytest.raises(ConfigError, match=r"data.tokenizer='no-such-tokenizer' .* looked for .*no-such-tokenizer"
                                          r".*save_pretrained"):
        data.build(cfg.data)


# --- models ---------------------------------------------------------------------------------------

CNNS = {"resnet18": models.resnet18, "mobilenet_v2": models.mobilenet_v2,
        "mobilenet_v3_small": lambda **k: models.mobilenet_v3("small", **k),
        "mobilenet_v3_large": lambda **k: models.mobilenet_v3("large", **k)}


@pytest.mark.parametrize("name", sorted(CNNS))
def test_cnn_forward_backward_on_32x32(name):
    torch.manual_seed(0)
    m = CNNS[name](num_classes=100, in_channels=3)
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([3, 97])
    maps = []
    last = m.layer4 if name == "resnet18" else m.features
    last.register_forward_hook(lambda mod, inp, out: maps.append(out.shape))
    logits = m(x)
    torch.nn.functional.cross_entropy(logits, y).backward()
    assert logits.shape == (2, 100)
    assert maps[0][-2:] == (4, 4)  # 8x down-sampling: the 32x32 adaptation (ImageNet strides give 1x1)
    grads = [p.grad for p in m.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    if name == "resnet18":
        assert m.conv1.kernel_size == (3, 3) and m.conv1.stride == (1, 1) and isinstance(m.maxpool, torch.nn.Identity)


def test_gpt2_sizes_and_forward_backward():
    with torch.device("meta"):  # shapes only: GPT-2 small's published parameter count
        small = models.gpt2(vocab_size=50257, block_size=1024, size="small")
    assert sum(p.numel() for p in small.parameters()) == 124_439_808
    torch.manual_seed(0)
    m = models.gpt2(vocab_size=320, block_size=16, size="tiny")
    ids = torch.randint(0, 320, (2, 16))
    logits = m(ids)
    assert logits.shape == (2, 16, 320)
    torch.nn.functional.cross_entropy(logits.reshape(-1, 320), ids.reshape(-1)).backward()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters())


def test_gpt2_pretrained_errors_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="GPT-2 has none of size .tiny."):
        models.gpt2(vocab_size=50257, block_size=64, size="tiny", pretrained=True)
    cfg = make_cfg("dataset=python_docs", "model=gpt2", "model.pretrained=true", f"model.weights={tmp_path / 'nope'}")
    with pytest.raises(ConfigError, match="pretrained weights .* could not be loaded.*model.weights=DIR"):
        models.build(cfg.model, {"vocab_size": 50257, "block_size": 64})


@pytest.mark.slow
def test_echo_run_trains_every_model_one_step(tmp_path):
    out = cli(f"hydra.sweep.dir={tmp_path / 'cnn'}", "model=resnet18,mobilenet_v2,mobilenet_v3_small,mobilenet_v3_large",
              "budget.steps=1", "eval.every_loads=null", "data.max_test_examples=32", "data.batch_size=8",
              "train.threads=1", "-m")
    assert out.returncode == 0, out.stderr
    records, _ = run_inproc(tmp_path / "gpt2", "dataset=python_docs", "model=gpt2", "model.size=tiny",
                            "budget.steps=1", "eval.every_loads=null", "data.max_test_examples=8", "data.batch_size=4")
    runs = sorted(p.parent for p in (tmp_path / "cnn").rglob("summary.json")) + [tmp_path / "gpt2"]
    statuses = {json.loads((r / "summary.json").read_text())["status"] for r in runs}
    assert len(runs) == 5 and statuses == {"complete"}
    assert all([r["step"] for r in read_records(run)] == [0, 1] for run in runs)
