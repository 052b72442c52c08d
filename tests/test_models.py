"""The user's own models, offline: any torchvision or timm classifier by name (stems adapted to small
images, the data set's channels and classes, local weights), any transformers causal LM from a local
directory or an inline config, and the existing options as small-input torchvision models."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from runner import models
from runner.errors import ConfigError

CONF = Path(__file__).resolve().parent.parent / "conf" / "model"


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def last_map(m: nn.Module, x: torch.Tensor) -> torch.Size:
    """The spatial size of the last convolution's output (the map the classifier pools)."""
    shapes = []
    conv = [c for c in m.modules() if isinstance(c, nn.Conv2d)][-1]
    hook = conv.register_forward_hook(lambda mod, i, o: shapes.append(o.shape[-2:]))
    m(x)
    hook.remove()
    return shapes[-1]


# --- the existing options: torchvision's models with small-input stems ------------------------------

@pytest.mark.parametrize("option, count", [("resnet18", 11_173_962), ("mobilenet_v2", 2_236_682),
                                           ("mobilenet_v3_small", 1_528_106), ("mobilenet_v3_large", 4_214_842)])
def test_options_keep_their_architecture_and_parameter_count(option, count):
    cfg = OmegaConf.load(CONF / f"{option}.yaml")
    with torch.device("meta"):  # shapes only
        m = models.build(cfg, {"num_classes": 10, "in_channels": 3, "image_size": 32})
    assert n_params(m) == count
    if option == "resnet18":
        assert m.conv1.kernel_size == (3, 3) and m.conv1.stride == (1, 1) and isinstance(m.maxpool, nn.Identity)


# --- model=torchvision -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["resnet18", "resnext50_32x4d", "densenet121", "shufflenet_v2_x0_5", "mobilenet_v2",
                                  "mobilenet_v3_small", "efficientnet_b0", "mnasnet0_5", "regnet_x_400mf",
                                  "regnet_y_400mf"])
def test_small_input_down_samples_8x_in_every_adapted_family(name):
    torch.manual_seed(0)
    m = models.torchvision_model(name, num_classes=5, in_channels=1, small_input=True).eval()
    x = torch.randn(2, 1, 32, 32)
    assert last_map(m, x) == (4, 4)  # 32 -> 4: the CIFAR adaptation (the ImageNet stem gives 1x1)
    with torch.no_grad():
        assert m(x).shape == (2, 5)
    first = next(c for c in m.modules() if isinstance(c, nn.Conv2d))
    assert first.in_channels == 1 and first.stride == (1, 1)


@pytest.mark.parametrize("name", ["vgg11", "vit_b_16", "convnext_tiny", "squeezenet1_0"])
def test_small_input_is_refused_where_it_has_no_sensible_form(name):
    with pytest.raises(ConfigError, match=rf"small_input=true has no sensible form for torchvision's {name}: it "
                                          r"adapts the stems of densenet, efficientnet"):
        with torch.device("meta"):
            models.torchvision_model(name, num_classes=10, small_input=True)


def test_imagenet_stems_take_the_data_sets_channels_and_classes():
    torch.manual_seed(0)
    m = models.torchvision_model("mobilenet_v3_small", num_classes=4, in_channels=1).eval()
    x = torch.randn(3, 1, 64, 64)
    assert last_map(m, x) == (2, 2)  # the ImageNet stem: 32x down-sampling
    assert m.features[0][0].in_channels == 1 and m.features[0][0].stride == (2, 2)
    with torch.no_grad():
        assert m(x).shape == (3, 4)
    with torch.device("meta"):  # shapes only: ViT's position table is built for the data set's image size
        vit = models.build(OmegaConf.create({"_target_": "runner.models.torchvision_model", "name": "vit_b_32"}),
                           {"num_classes": 3, "in_channels": 3, "image_size": 64})
        assert vit.image_size == 64 and vit(torch.randn(1, 3, 64, 64)).shape == (1, 3)


def test_the_data_sets_labels_never_fill_a_models_arguments():
    cfg = OmegaConf.create({"_target_": "runner.models.torchvision_model", "small_input": True})  # no name
    with torch.device("meta"):
        m = models.build(cfg, {"num_classes": 10, "in_channels": 1, "image_size": 28, "name": "fashion_mnist"})
    assert n_params(m) == 11_173_962 - 2 * 64 * 3 * 3  # the default resnet18, one input channel


LANGUAGE = {"vocab_size": 300, "block_size": 8, "name": "hf"}
IMAGES = {"num_classes": 10, "in_channels": 1, "image_size": 28, "name": "fashion_mnist"}


@pytest.mark.parametrize("target, info, says", [
    ("runner.models.SmallCNN", LANGUAGE, r"built from num_classes, in_channels, and the data set gives vocab_size, "
                                         r"block_size .*token blocks.*model=tiny_gpt2 or model=hf_causal_lm"),
    ("runner.models.torchvision_model", LANGUAGE, r"token blocks"),
    ("runner.models.tiny_gpt2", IMAGES, r"built from vocab_size, block_size.*images and labels.*model=cnn"),
    ("runner.models.hf_causal_lm", IMAGES, r"images and labels"),
])
def test_a_model_that_does_not_fit_the_data_is_refused_before_it_is_built(target, info, says):
    with pytest.raises(ConfigError, match=says):
        models.build(OmegaConf.create({"_target_": target}), info)


def test_a_data_set_that_states_no_facts_leaves_the_model_its_defaults():
    """A user's data set may give no facts at all: the model then takes its own defaults, or its config's."""
    assert isinstance(models.build(OmegaConf.create({"_target_": "runner.models.SmallCNN"}), {}), models.SmallCNN)
    gpt = OmegaConf.create({"_target_": "runner.models.tiny_gpt2", "vocab_size": 50, "block_size": 4, "n_embd": 8})
    assert models.build(gpt, IMAGES).hf.config.vocab_size == 50  # set on the model: no fact needed


def test_unknown_names_and_options_are_config_errors_with_the_closest_names():
    with pytest.raises(ConfigError, match=r"model.name='resnet19' is not a torchvision classification model: did you "
                                          r"mean .*resnet18"):
        models.torchvision_model("resnet19")
    cfg = OmegaConf.create({"_target_": "runner.models.torchvision_model", "name": "mobilenet_v2", "widht_mult": 0.5})
    with pytest.raises(ConfigError, match=r"torchvision's mobilenet_v2 could not be built .*widht_mult"):
        models.build(cfg, {"num_classes": 10, "in_channels": 3})


def test_weights_load_strictly_except_a_head_of_another_size(tmp_path, caplog):
    torch.manual_seed(0)
    src = models.torchvision_model("resnet18", num_classes=10, small_input=True)
    torch.save(src.state_dict(), tmp_path / "r18.pt")
    torch.save({"model": {f"module.{k}": v for k, v in src.state_dict().items()}}, tmp_path / "ckpt.pt")
    for f in ("r18.pt", "ckpt.pt"):  # a plain state dict, and a DDP checkpoint's
        m = models.torchvision_model("resnet18", num_classes=10, small_input=True, weights=str(tmp_path / f))
        assert all(torch.equal(m.state_dict()[k], v) for k, v in src.state_dict().items())
    torch.manual_seed(1)
    fresh = models.torchvision_model("resnet18", num_classes=3, small_input=True)
    torch.manual_seed(1)
    with caplog.at_level(logging.WARNING, logger="runner.models"):
        m = models.torchvision_model("resnet18", num_classes=3, small_input=True, weights=str(tmp_path / "r18.pt"))
    assert "classification head (fc)" in caplog.text and "fresh initialisation" in caplog.text
    assert torch.equal(m.fc.weight, fresh.fc.weight) and torch.equal(m.fc.bias, fresh.fc.bias)  # the whole head
    assert torch.equal(m.layer4[1].conv2.weight, src.layer4[1].conv2.weight)
    # a grayscale data set: the RGB input convolution is summed over its channels
    m = models.torchvision_model("resnet18", num_classes=10, in_channels=1, small_input=True,
                                 weights=str(tmp_path / "r18.pt"))
    torch.testing.assert_close(m.conv1.weight, src.conv1.weight.sum(1, keepdim=True))
    with pytest.raises(ConfigError, match=r"does not fit this model .*conv1.weight: file \(64, 3, 3, 3\), model "
                                          r"\(64, 3, 7, 7\).*small_input"):
        models.torchvision_model("resnet18", num_classes=10, weights=str(tmp_path / "r18.pt"))
    with pytest.raises(ConfigError, match=r"does not fit this model .*missing from the file"):
        models.torchvision_model("resnet34", num_classes=10, small_input=True, weights=str(tmp_path / "r18.pt"))
    with pytest.raises(ConfigError, match=r"model.weights=.*nope.pt is not a file"):
        models.torchvision_model("resnet18", weights=str(tmp_path / "nope.pt"))


# --- model=timm ------------------------------------------------------------------------------------

def test_timm_models_by_name_with_local_weights(tmp_path, caplog):
    cfg = OmegaConf.load(CONF / "timm.yaml")
    cfg.name = "test_resnet"  # one of timm's tiny test models
    torch.manual_seed(0)
    m = models.build(cfg, {"num_classes": 7, "in_channels": 1, "image_size": 32})
    assert m(torch.randn(2, 1, 32, 32)).shape == (2, 7)
    torch.save(m.state_dict(), tmp_path / "t.pt")
    with caplog.at_level(logging.WARNING, logger="runner.models"):
        m2 = models.timm_model("test_resnet", num_classes=4, in_channels=1, weights=str(tmp_path / "t.pt"))
    assert "classification head (fc)" in caplog.text
    same = [k for k in m.state_dict() if not k.startswith("fc.")]
    assert all(torch.equal(m.state_dict()[k], m2.state_dict()[k]) for k in same)
    with pytest.raises(ConfigError, match=r"model.name='resnet1800' is not a timm model: did you mean .*resnet1"):
        models.timm_model("resnet1800")


def test_timm_missing_says_how_to_install_it(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "timm", None)  # import timm raises ImportError
    with pytest.raises(ConfigError, match=r'pip install -e "\.\[timm\]"'):
        models.timm_model("resnet18")


# --- model=hf_causal_lm ----------------------------------------------------------------------------

def test_hf_causal_lm_from_an_inline_config_is_tiny_gpt2():
    cfg = OmegaConf.load(CONF / "hf_causal_lm.yaml")
    cfg.config = {"model_type": "gpt2", "n_layer": 2, "n_head": 2, "n_embd": 64, "resid_pdrop": 0.0,
                  "embd_pdrop": 0.0, "attn_pdrop": 0.0}
    torch.manual_seed(0)
    m = models.build(cfg, {"vocab_size": 300, "block_size": 16})
    torch.manual_seed(0)
    ref = models.tiny_gpt2(vocab_size=300, block_size=16)
    assert m.hf.config.vocab_size == 300 and m.hf.config.n_positions == 16 and m.hf.config.eos_token_id == 299
    assert m.state_dict().keys() == ref.state_dict().keys()
    assert all(torch.equal(v, ref.state_dict()[k]) for k, v in m.state_dict().items())  # the same model
    ids = torch.randint(0, 300, (2, 16))
    assert m(ids).shape == (2, 16, 300)


def test_hf_causal_lm_from_a_local_directory(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    src = GPT2LMHeadModel(GPT2Config(vocab_size=320, n_positions=32, n_layer=1, n_head=2, n_embd=16,
                                     bos_token_id=319, eos_token_id=319)).eval()
    src.save_pretrained(tmp_path / "gpt")
    m = models.hf_causal_lm(vocab_size=300, block_size=16, name_or_path=str(tmp_path / "gpt")).eval()
    ids = torch.randint(0, 300, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(m(ids), src(input_ids=ids).logits)  # the saved weights, pretrained
    assert next(m.parameters()).dtype == torch.float32
    src.to(torch.bfloat16).save_pretrained(tmp_path / "bf16")  # transformers would load it in bfloat16
    assert next(models.hf_causal_lm(300, 16, name_or_path=str(tmp_path / "bf16")).parameters()).dtype == torch.float32
    assert next(models.hf_causal_lm(300, 16, name_or_path=str(tmp_path / "bf16"), pretrained=False)
                .parameters()).dtype == torch.float32
    fresh = models.hf_causal_lm(vocab_size=300, block_size=16, name_or_path=str(tmp_path / "gpt"), pretrained=False)
    assert fresh.hf.config.vocab_size == 300 and fresh.hf.config.n_positions == 16  # the data set's, not the file's
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "config.json").write_text((tmp_path / "gpt" / "config.json").read_text())
    fresh = models.hf_causal_lm(vocab_size=50, block_size=8, name_or_path=str(tmp_path / "cfg"))
    assert fresh.hf.config.vocab_size == 50 and fresh(torch.randint(0, 50, (1, 8))).shape == (1, 8, 50)
    with pytest.raises(ConfigError, match=r"has a vocabulary of 320 and a context of 32 tokens, but the data set "
                                          r"needs 400 and 16"):
        models.hf_causal_lm(vocab_size=400, block_size=16, name_or_path=str(tmp_path / "gpt"))
    with pytest.raises(ConfigError, match=r"model.pretrained=true but .*cfg has no weights"):
        models.hf_causal_lm(vocab_size=50, block_size=8, name_or_path=str(tmp_path / "cfg"), pretrained=True)
    with pytest.raises(ConfigError, match=r"model.name_or_path=gpt2 is not a local model directory.*never downloads"):
        models.hf_causal_lm(vocab_size=50, block_size=8, name_or_path="gpt2")  # a hub name: refused, not fetched
    with pytest.raises(ConfigError, match=r"needs model.name_or_path=DIR .* or model.config with a model_type"):
        models.hf_causal_lm(vocab_size=50, block_size=8)
    with pytest.raises(ConfigError, match=r"model_type must be a transformers model type"):
        models.hf_causal_lm(vocab_size=50, block_size=8, config={"model_type": "gpt9"})


# --- the small CNN ---------------------------------------------------------------------------------

@pytest.mark.parametrize("size, channels", [(28, 1), (45, 3)])
def test_small_cnn_trains_on_28_pixels_and_larger(size, channels):
    torch.manual_seed(0)
    m = models.SmallCNN(in_channels=channels, num_classes=10, width=8)
    y = torch.arange(32) % 10
    x = torch.randn(10, channels, size, size)[y] + 0.5 * torch.randn(32, channels, size, size)  # a pattern per class
    opt = torch.optim.SGD(m.parameters(), lr=0.2, momentum=0.9)
    losses = []
    for _ in range(30):
        loss = nn.functional.cross_entropy(m(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert m(x).shape == (32, 10) and all(torch.isfinite(p.grad).all() for p in m.parameters())
    assert losses[-1] < 0.5 * losses[0]  # it fits a fixed batch: the adaptive pool serves every size
