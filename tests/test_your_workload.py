"""The user's own workload through the CLI, on files the tests write in the real formats: every new
data set and model option runs one step; the pipeline's records do not depend on its workers; a
decode-bound image folder makes plain SGD wait and adaptive echoing not."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import cli_inproc, read_records, without_wall
from tests.test_datasets import TEXT, hf_images, image_tree, png_bytes, write_idx, write_image

ONE_STEP = ("budget.steps=1", "eval.every_loads=null")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """MNIST-format IDX files, an image folder, Hugging Face data sets (images; text), a tokenizer, a
    GPT-2 directory and a ResNet-18 state dict."""
    import datasets
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    from runner.models import torchvision_model

    d = tmp_path_factory.mktemp("files")
    write_idx(d / "mnist", np.random.default_rng(0), gz=True)
    image_tree(d / "imgs", np.random.default_rng(0))
    arrays, labels = hf_images(9, np.random.default_rng(0))
    feats = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b", "c"])})
    full = datasets.Dataset.from_dict({"image": [{"bytes": png_bytes(a), "path": None} for a in arrays],
                                       "label": labels}, features=feats)
    datasets.DatasetDict(train=full.select(range(6)), test=full.select(range(6, 9))).save_to_disk(d / "hf_images")
    datasets.DatasetDict(train=datasets.Dataset.from_dict({"text": TEXT[:20]}),
                         test=datasets.Dataset.from_dict({"text": TEXT[20:]})).save_to_disk(d / "hf_text")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    tok.train_from_iterator(TEXT, trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                      show_progress=False))
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>").save_pretrained(d / "tok")
    GPT2LMHeadModel(GPT2Config(vocab_size=320, n_positions=32, n_layer=1, n_head=2, n_embd=16, bos_token_id=319,
                               eos_token_id=319)).save_pretrained(d / "gpt")
    torch.save(torchvision_model("resnet18", num_classes=10, in_channels=1, small_input=True).state_dict(),
               d / "r18.pt")
    return d


LANG = ("data.task=language", "data.tokenizer={d}/tok", "data.block_size=8", "data.batch_size=2",
        "target.metric=test_ppl", "target.mode=min")
CASES = {
    "fashion_mnist": ("dataset=fashion_mnist", "data.root={d}/mnist", "data.download=false", "data.batch_size=4"),
    "fashion_mnist_augment": ("dataset=fashion_mnist", "data.root={d}/mnist", "data.download=false",
                              "data.batch_size=4", "data.augment=true", "data.augment_on_echo=true",
                              "schedule=constant", "schedule.p=0.5", "budget.steps=3"),
    "mnist_workers": ("dataset=mnist", "data.root={d}/mnist", "data.download=false", "data.batch_size=4",
                      "data.augment=true", "data.workers=2"),
    "image_folder": ("dataset=image_folder", "data.root={d}/imgs", "data.image_size=16", "data.batch_size=2",
                     "data.workers=1"),
    "image_folder_mobilenet": ("dataset=image_folder", "data.root={d}/imgs", "data.image_size=32",
                               "data.batch_size=2", "data.augment=false", "model=mobilenet_v3_small"),
    "hf_images": ("dataset=hf", "data.path={d}/hf_images", "data.image_size=16", "data.batch_size=2",
                  "data.workers=1"),
    "hf_text_pretrained": ("dataset=hf", "data.path={d}/hf_text", *LANG, "model=hf_causal_lm",
                           "model.name_or_path={d}/gpt", "optim=adamw"),
    "hf_text_fresh": ("dataset=hf", "data.path={d}/hf_text", *LANG, "model=hf_causal_lm",
                      "model.config={{model_type:gpt2,n_layer:1,n_head:2,n_embd:16}}"),
    "torchvision_weights": ("dataset=mnist", "data.root={d}/mnist", "data.download=false", "data.batch_size=4",
                            "model=torchvision", "model.name=resnet18", "model.small_input=true",
                            "model.weights={d}/r18.pt"),
    "timm": ("dataset=mnist", "data.root={d}/mnist", "data.download=false", "data.batch_size=4", "model=timm",
             "model.name=test_resnet"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_every_data_set_and_model_option_trains_through_the_cli(files, tmp_path, case):
    args = [a.format(d=files) for a in CASES[case]]
    code, err = cli_inproc(*ONE_STEP, *args, f"hydra.run.dir={tmp_path}")
    assert code == 0, err[-2000:]
    recs = read_records(tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    steps = 3 if "budget.steps=3" in args else 1
    assert summary["status"] == "complete" and recs[-1]["step"] == steps
    metric = "test_ppl" if "data.task=language" in args else "test_acc"
    assert np.isfinite(recs[-1][metric]) and recs[-1]["example_loads"] > 0


@pytest.mark.slow
def test_records_do_not_depend_on_the_number_of_workers(tmp_path):
    """The same batches in the same order, the same views, whatever loads them."""
    common = ("budget.example_loads=640", "eval.every_loads=320", "model.width=4", "data.max_test_examples=64",
              "schedule=constant", "schedule.p=0.5")
    runs = {}
    for w in (0, 2):
        code, err = cli_inproc(*common, f"data.workers={w}", f"hydra.run.dir={tmp_path / str(w)}")
        assert code == 0, err[-2000:]
        runs[w] = without_wall(read_records(tmp_path / str(w)))
    assert runs[0] == runs[2] and len(runs[0]) >= 3


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory) -> Path:
    """A decode-bound image folder: 10 classes of 96x96 JPEGs."""
    d = tmp_path_factory.mktemp("jpegs")
    rng = np.random.default_rng(0)
    for split, n in (("train", 32), ("val", 2)):
        for c in range(10):
            for i in range(n):
                write_image(d / split / f"c{c}" / f"{i}.jpg", rng.integers(0, 256, (96, 96, 3), dtype=np.uint8), "JPEG")
    return d


@pytest.mark.slow
@pytest.mark.serial
def test_a_decode_bound_pipeline_idles_plain_sgd_and_not_adaptive_echoing(jpegs, tmp_path):
    """One worker decodes and crops each 96x96 JPEG; a step of the narrow CNN on 32 of them at 16x16 is
    far quicker. Plain SGD waits for most of its training time; adaptive echoing waits for less than
    2% of it and takes several steps per fresh batch. Its only wait is for the first batch, a worker's
    start included (0.02 s on a busy CI machine), so it trains for 800 steps (about 3 s) to be judged."""
    common = ("dataset=image_folder", f"data.root={jpegs}", "data.image_size=16", "data.workers=1",
              "model.width=4", "eval.every_loads=null")
    code, err = cli_inproc(*common, "schedule=none", "budget.steps=20", f"hydra.run.dir={tmp_path / 'sgd'}")
    assert code == 0, err[-2000:]
    code, err = cli_inproc(*common, "echo=adaptive", "budget.steps=800", f"hydra.run.dir={tmp_path / 'ada'}")
    assert code == 0, err[-2000:]
    sgd, ada = read_records(tmp_path / "sgd")[-1], read_records(tmp_path / "ada")[-1]
    assert sgd["idle_s"] > 0.5 * sgd["wall_s"] and sgd["echo_steps"] == 0
    assert ada["idle_s"] < 0.02 * ada["wall_s"], (ada["idle_s"], ada["wall_s"])
    assert ada["step"] / (ada["example_loads"] / 32) > 1


@pytest.mark.parametrize("dataset, sgd_lr, sgd_wd", [("cifar10", 0.1, 5e-4), ("python_docs", 0.1, 0.0),
                                                     ("wikitext2", 0.1, 0.0)])
def test_a_data_sets_sgd_values_never_reach_another_optimizer(dataset, sgd_lr, sgd_wd):
    # The data sets suggest SGD with their own rate; choosing AdamW must give AdamW's own values
    # (lr 1e-3, weight decay 0.01), not SGD's lr 0.1.
    from runner.config import compose
    sgd = compose([f"dataset={dataset}"]).optim
    assert (sgd._target_, sgd.lr, sgd.weight_decay, sgd.momentum) == ("torch.optim.SGD", sgd_lr, sgd_wd, 0.9)
    adamw = compose([f"dataset={dataset}", "optim=adamw"]).optim
    assert (adamw._target_, adamw.lr, adamw.weight_decay) == ("torch.optim.AdamW", 1e-3, 0.01)
    assert compose([f"dataset={dataset}", "optim=adamw", "optim.lr=3e-4"]).optim.lr == 3e-4


@pytest.mark.slow
def test_the_console_script_imports_the_users_class_from_the_current_directory(tmp_path):
    # As with `python -m`: mywork.py beside the command is found without PYTHONPATH.
    import os
    import subprocess
    import sys
    (tmp_path / "mywork.py").write_text("from runner.models import SmallCNN\n\n\n"
                                         "class Net(SmallCNN):\n    built = 'mywork'\n")
    script = Path(sys.executable).parent / "echo-run"  # the console script, not `python -m`
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([str(script), "logger.progress=false", "model._target_=mywork.Net",
                        "budget.example_loads=320", "eval.every_loads=320", "train.threads=1",
                        f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["final"]["example_loads"] == 320
    assert "mywork.Net" in (tmp_path / "run" / ".hydra" / "config.yaml").read_text()
