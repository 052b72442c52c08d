"""Models, built from config with ``hydra.utils.instantiate``. Every model maps a batch of inputs
to logits, so one loss function serves classification and language modelling."""
from __future__ import annotations

import difflib
import logging
import pickle
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from .errors import ConfigError, unwrapped


class SmallCNN(nn.Module):
    """Two conv blocks with BatchNorm (whose buffers data-parallel averaging must carry)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 32):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * width * 16, 128), nn.ReLU(), nn.Linear(128, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class CausalLM(nn.Module):
    """A Hugging Face causal language model that returns logits only."""

    def __init__(self, hf_model: nn.Module):
        super().__init__()
        self.hf = hf_model

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.hf(input_ids=ids, use_cache=False).logits


def tiny_gpt2(vocab_size: int, block_size: int, n_layer: int = 2, n_head: int = 2, n_embd: int = 64,
              dropout: float = 0.0) -> nn.Module:
    """GPT-2's architecture (``transformers.GPT2LMHeadModel``) at a size a CPU trains in minutes."""
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(vocab_size=vocab_size, n_positions=block_size, n_layer=n_layer, n_head=n_head,
                     bos_token_id=vocab_size - 1, eos_token_id=vocab_size - 1,
                     n_embd=n_embd, resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout)
    return CausalLM(GPT2LMHeadModel(cfg))


DATA_FACTS = ("num_classes", "in_channels", "image_size", "vocab_size", "block_size")


def build(model_cfg, info: dict) -> nn.Module:
    """Instantiate ``model_cfg`` (with ``_target_``), passing the data set's facts (classes,
    channels, vocabulary...) that the target's signature asks for and the config leaves unset."""
    import inspect

    from hydra.utils import instantiate

    from hydra.errors import InstantiationException

    from .schema import target_of

    params = inspect.signature(target_of(model_cfg, "model")).parameters  # a failing import raises as itself
    # Only the facts a model is built from: info also carries labels ("name", "source", "classes")
    # that must never fill a model's own argument of the same name (model.name of model=torchvision).
    extra = {k: v for k, v in info.items() if k in DATA_FACTS and k in params and k not in model_cfg}
    wants = [k for k in DATA_FACTS if k in params and k not in model_cfg]
    gives = [k for k in DATA_FACTS if k in info]  # none: a user's data set that states no facts
    if wants and gives and not extra:  # an image model on token blocks, a language model on images
        fits = ("model=tiny_gpt2 or model=hf_causal_lm" if "vocab_size" in info
                else "model=cnn, model=torchvision model.name=NAME or model=timm model.name=NAME")
        raise ConfigError(
            f"the model {model_cfg._target_} does not fit the data set {info.get('name', '')!r}: it is built from "
            f"{', '.join(wants)}, and the data set gives {', '.join(gives)} (its batches are "
            f"{'token blocks' if 'vocab_size' in info else 'images and labels'}). Choose a model for this data "
            f"({fits}), or set the model's own {', '.join('model.' + k for k in wants)}.")
    try:
        return instantiate(model_cfg, **extra)
    except InstantiationException as e:
        raise unwrapped(e)  # the target's own error: a ConfigError (exit 2), or any other with its traceback


# --- Any torchvision or timm classifier, and the user's own weights --------------------------------

def _stem(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """The first convolution with ``in_channels`` inputs and stride 1 (a 32x32 image has no pixels
    to spare for an ImageNet stem's early down-sampling)."""
    return nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, 1, conv.padding, bias=conv.bias is not None)


def _first_stride2_to_1(modules: nn.Module) -> None:
    """The first stride-2 convolution in ``modules`` at stride 1 (padding is (k-1)/2, so the map
    keeps its size)."""
    for m in modules.modules():
        if isinstance(m, nn.Conv2d) and m.stride == (2, 2):
            m.stride = (1, 1)
            return


def _cifar_strides(features: nn.Module, in_channels: int) -> None:
    """Adapt an ImageNet MobileNet/EfficientNet to 32x32: a stride-1 stem and the first stride-2 block
    at stride 1, so the network down-samples 8x instead of 32x (the usual CIFAR adaptation, 32x32 -> 4x4)."""
    features[0][0] = _stem(features[0][0], in_channels)
    _first_stride2_to_1(features[1:])


def _small_resnet_stem(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """The CIFAR ResNet stem: a 3x3 stride-1 convolution in place of the 7x7 stride-2 one."""
    return nn.Conv2d(in_channels, conv.out_channels, 3, 1, 1, bias=False)


def _regnet_small(m: nn.Module, in_channels: int) -> None:
    m.stem[0] = _stem(m.stem[0], in_channels)
    # The first block down-samples in two places (its 3x3 convolution and its 1x1 shortcut): both go.
    for c in m.trunk_output[0][0].modules():
        if isinstance(c, nn.Conv2d) and c.stride == (2, 2):
            c.stride = (1, 1)


def _shufflenet_small(m: nn.Module, in_channels: int) -> None:
    m.conv1[0] = _small_resnet_stem(m.conv1[0], in_channels)
    m.maxpool = nn.Identity()


def _resnet_small(m: nn.Module, in_channels: int) -> None:
    m.conv1 = _small_resnet_stem(m.conv1, in_channels)
    m.maxpool = nn.Identity()


def _densenet_small(m: nn.Module, in_channels: int) -> None:
    m.features.conv0 = _small_resnet_stem(m.features.conv0, in_channels)
    m.features.pool0 = nn.Identity()


def _mnasnet_small(m: nn.Module, in_channels: int) -> None:
    m.layers[0] = _stem(m.layers[0], in_channels)
    _first_stride2_to_1(m.layers[1:])


# Families whose ImageNet stem (32x down-sampling) can be turned into the usual CIFAR one (8x: a
# 32x32 image ends as a 4x4 map): the stem at stride 1 (ResNet-like stems also lose their max-pool
# and 7x7 kernel) and, where the stem alone gives too little, the first stride-2 block at stride 1.
SMALL_INPUT = {
    "resnet": _resnet_small, "resnext": _resnet_small, "wide_resnet": _resnet_small,
    "densenet": _densenet_small, "shufflenet_v2": _shufflenet_small,
    "mobilenet_v2": lambda m, c: _cifar_strides(m.features, c),
    "mobilenet_v3": lambda m, c: _cifar_strides(m.features, c),
    "efficientnet": lambda m, c: _cifar_strides(m.features, c),
    "mnasnet": _mnasnet_small, "regnet": _regnet_small,
}


def _family(name: str) -> Optional[str]:
    return next((f for f in sorted(SMALL_INPUT, key=len, reverse=True) if name.startswith(f)), None)


def _replace_first_conv(m: nn.Module, in_channels: int) -> None:
    """The input convolution rebuilt for ``in_channels`` (same kernel, stride, padding, outputs)."""
    name, conv = next((n, c) for n, c in m.named_modules() if isinstance(c, nn.Conv2d))
    if conv.in_channels == in_channels:
        return
    if conv.groups != 1:
        raise ConfigError(f"the input convolution {name} of this model is grouped: it cannot take {in_channels} "
                          "channels.")
    new = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                    bias=conv.bias is not None, padding_mode=conv.padding_mode)
    parent, _, leaf = name.rpartition(".")
    setattr(m.get_submodule(parent) if parent else m, leaf, new)


def _close(name: str, names: list, what: str, key: str) -> ConfigError:
    near = difflib.get_close_matches(name, names, n=6, cutoff=0.5)
    return ConfigError(f"{key}={name!r} is not a {what}: "
                       + (f"did you mean {', '.join(near)}? " if near else "")
                       + f"({len(names)} names; list them with " + (
                           "`python -c \"import torchvision; print(torchvision.models.list_models("
                           "module=torchvision.models))\"`)." if what.startswith("torchvision")
                           else "`python -c \"import timm; print(timm.list_models())\"`)."))


def _safetensor_error() -> type:
    try:
        from safetensors import SafetensorError
    except ImportError:  # safetensors is optional
        return OSError
    return SafetensorError


def _state_dict(path: str) -> dict:
    """The tensors of a weights file: a plain state dict, or one under ``state_dict`` / ``model``
    (training checkpoints), without DDP's ``module.`` or torch.compile's ``_orig_mod.`` prefixes."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"model.weights={path} is not a file: point it at a state dict saved with "
                          "`torch.save(model.state_dict(), FILE)` (or a .safetensors file).")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(p))
        else:
            sd = torch.load(p, map_location="cpu", weights_only=True)
    # A damaged or foreign file: torch.load's zip reader (RuntimeError), unpickler, EOFError or a
    # UnicodeDecodeError (ValueError); safetensors' own error.
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError, _safetensor_error()) as e:
        raise ConfigError(f"model.weights={path} could not be read as a state dict ({type(e).__name__}: "
                          f"{str(e)[:200]}).") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ConfigError(f"model.weights={path} holds no state dict (a mapping of names to tensors).")
    return {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in sd.items()}


def load_weights(model: nn.Module, path: str, head: list, first_conv: Optional[str]) -> None:
    """Load ``path`` into ``model``: strict on the backbone; the classification head (the modules
    named in ``head``) is loaded only when it matches (another number of classes keeps it freshly
    initialised, and says so); a 3-channel input convolution loaded into a 1-channel model is
    summed over its channels (as timm does for grayscale)."""
    sd = _state_dict(path)
    own = model.state_dict()
    in_head = lambda k: any(k == h or k.startswith(h + ".") for h in head)  # noqa: E731
    if first_conv is not None:
        k = f"{first_conv}.weight"
        if k in sd and k in own and sd[k].shape != own[k].shape and sd[k].shape[1] == 3 and own[k].shape[1] == 1 \
                and sd[k].shape[0] == own[k].shape[0] and sd[k].shape[2:] == own[k].shape[2:]:
            sd[k] = sd[k].sum(dim=1, keepdim=True)
    differ = {k for k in own.keys() & sd.keys() if own[k].shape != sd[k].shape}
    problems = sorted((own.keys() - sd.keys()) | (sd.keys() - own.keys()) | differ)
    body = [k for k in problems if not in_head(k)]
    if body:
        show = "; ".join(f"{k}: " + (f"file {tuple(sd[k].shape)}, model {tuple(own[k].shape)}" if k in differ
                                     else "missing from the file" if k in own else "not in the model")
                         for k in body[:5])
        raise ConfigError(f"model.weights={path} does not fit this model ({len(body)} tensors outside the "
                          f"classification head differ; {show}). Use weights of the same architecture, "
                          "saved with the same model.small_input and model options.")
    if problems:  # only the head differs: keep the whole head fresh rather than half of it
        sd = {k: v for k, v in sd.items() if not in_head(k)}
        logging.getLogger(__name__).warning(
            "model.weights=%s: the classification head (%s) differs from this model's (%s), so it keeps its "
            "fresh initialisation; every other tensor was loaded.", path, ", ".join(head), ", ".join(problems[:4]))
    model.load_state_dict(sd, strict=False)


def torchvision_model(name: str = "resnet18", num_classes: int = 1000, in_channels: int = 3,
                      small_input: bool = False, weights: Optional[str] = None, image_size: Optional[int] = None,
                      **kwargs: Any) -> nn.Module:
    """Any torchvision classification model by name (``torchvision.models.get_model``), with the data
    set's classes and channels; ``small_input`` adapts the stem to 28-32 pixel images; ``weights`` a
    local state dict; other keys (``dropout``, ``width_mult``...) go to torchvision's builder."""
    import torchvision

    names = torchvision.models.list_models(module=torchvision.models)
    if name not in names:
        raise _close(name, names, "torchvision classification model", "model.name")
    if name in ("googlenet", "inception_v3"):
        kwargs.setdefault("aux_logits", False)  # training would return auxiliary outputs, not logits
    if name.startswith("vit_") and image_size is not None:
        kwargs.setdefault("image_size", image_size)  # ViT's position table is built for one image size
    try:
        m = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)
    except (TypeError, ValueError, AssertionError, RuntimeError) as e:
        raise ConfigError(f"torchvision's {name} could not be built with num_classes={num_classes} and "
                          f"{kwargs or 'no other options'} ({type(e).__name__}: {e}): check the model.* keys "
                          "given to it.") from None
    if small_input:
        family = _family(name)
        if family is None:
            raise ConfigError(
                f"model.small_input=true has no sensible form for torchvision's {name}: it adapts the stems of "
                f"{', '.join(sorted(SMALL_INPUT))}. Choose one of those, or keep model.small_input=false "
                "and give the model larger images (data.image_size).")
        SMALL_INPUT[family](m, in_channels)
    _replace_first_conv(m, in_channels)
    if weights is not None:
        layers = [n for n, c in m.named_modules() if isinstance(c, (nn.Linear, nn.Conv2d))]
        load_weights(m, weights, head=[layers[-1]], first_conv=layers[0])
    return m


def timm_model(name: str = "resnet18", num_classes: int = 1000, in_channels: int = 3,
               weights: Optional[str] = None, **kwargs: Any) -> nn.Module:
    """Any timm model by name (``timm.create_model``, never downloading), with the data set's classes
    and channels; ``weights`` a local state dict; other keys go to ``timm.create_model``."""
    try:
        import timm
    except ImportError:
        raise ConfigError("model=timm needs the timm package: install it with `pip install -e \".[timm]\"` "
                          "(or `pip install timm`).") from None
    if not timm.is_model(name):
        raise _close(name, timm.list_models(), "timm model", "model.name")
    try:
        m = timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_channels, **kwargs)
    except (TypeError, ValueError, AssertionError, RuntimeError) as e:
        raise ConfigError(f"timm's {name} could not be built with num_classes={num_classes}, in_chans={in_channels} "
                          f"and {kwargs or 'no other options'} ({type(e).__name__}: {e}): check the model.* keys "
                          "given to it.") from None
    if weights is not None:
        cfg = getattr(m, "pretrained_cfg", {}) or {}
        head = cfg.get("classifier") or []
        first = cfg.get("first_conv")
        load_weights(m, weights, head=[head] if isinstance(head, str) else list(head),
                     first_conv=first if isinstance(first, str) else None)
    return m


def resnet18(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """torchvision's ResNet-18 for 32x32 images: a 3x3 stride-1 stem and no max-pool."""
    return torchvision_model("resnet18", num_classes, in_channels, small_input=True)


def mobilenet_v2(num_classes: int = 10, in_channels: int = 3, width_mult: float = 1.0,
                 dropout: float = 0.2) -> nn.Module:
    """torchvision's MobileNetV2 with strides adapted to 32x32 images."""
    return torchvision_model("mobilenet_v2", num_classes, in_channels, small_input=True, width_mult=width_mult,
                             dropout=dropout)


def mobilenet_v3(size: str = "small", num_classes: int = 10, in_channels: int = 3, dropout: float = 0.2) -> nn.Module:
    """torchvision's MobileNetV3 (``small`` or ``large``) with strides adapted to 32x32 images."""
    if size not in ("small", "large"):
        raise ConfigError(f"model.size={size!r} is not a MobileNetV3 size: choose small or large.")
    return torchvision_model(f"mobilenet_v3_{size}", num_classes, in_channels, small_input=True, dropout=dropout)


# --- GPT-2 (Hugging Face transformers) ----------------------------------------------------------------

# GPT-2's published sizes, and smaller ones of the same architecture for CPUs and smoke runs.
GPT2_SIZES = {
    "tiny": dict(n_layer=2, n_head=2, n_embd=128),
    "mini": dict(n_layer=6, n_head=6, n_embd=384),
    "small": dict(n_layer=12, n_head=12, n_embd=768),  # 124M parameters: "gpt2"
    "medium": dict(n_layer=24, n_head=16, n_embd=1024),  # 355M: "gpt2-medium"
    "large": dict(n_layer=36, n_head=20, n_embd=1280),  # 774M: "gpt2-large"
}
GPT2_HUB = {"small": "openai-community/gpt2", "medium": "openai-community/gpt2-medium",
            "large": "openai-community/gpt2-large"}


def gpt2(vocab_size: int, block_size: int, size: str = "small", pretrained: bool = False,
         weights: str | None = None, dropout: float = 0.1) -> nn.Module:
    """GPT-2 (``transformers.GPT2LMHeadModel``): the published weights when ``pretrained`` (from
    ``weights``, a directory or hub name, by default the hub's for ``size``), else initialised
    from a ``GPT2Config`` of ``size`` with the data set's vocabulary and context length."""
    from transformers import GPT2Config, GPT2LMHeadModel

    if size not in GPT2_SIZES:
        raise ConfigError(f"model.size={size!r} is not a GPT-2 size: choose one of {', '.join(GPT2_SIZES)}.")
    if not pretrained:
        eos = min(50256, vocab_size - 1)  # GPT-2's <|endoftext|>, or the last id of a smaller vocabulary
        cfg = GPT2Config(vocab_size=vocab_size, n_positions=block_size, resid_pdrop=dropout, embd_pdrop=dropout,
                         attn_pdrop=dropout, bos_token_id=eos, eos_token_id=eos, **GPT2_SIZES[size])
        return CausalLM(GPT2LMHeadModel(cfg))
    if weights is None and size not in GPT2_HUB:
        raise ConfigError(f"model.pretrained=true needs published weights, and GPT-2 has none of size "
                          f"{size!r}: choose model.size=small, medium or large, or model.pretrained=false.")
    src = weights or GPT2_HUB[size]
    try:
        hf = GPT2LMHeadModel.from_pretrained(src, resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout)
    except (OSError, ValueError) as e:  # transformers: no files, no network (OSError); a malformed config (ValueError)
        raise ConfigError(
            f"GPT-2's pretrained weights {src!r} could not be loaded ({type(e).__name__}: {str(e)[:200]}). "
            f"On a machine with a network run `python -c \"from transformers import GPT2LMHeadModel; "
            f"GPT2LMHeadModel.from_pretrained('{src}').save_pretrained('gpt2-{size}')\"`, copy that "
            "directory here and pass model.weights=DIR; or train from scratch with model.pretrained=false.") from None
    if hf.config.vocab_size < vocab_size or hf.config.n_positions < block_size:
        raise ConfigError(f"the pretrained GPT-2 {src!r} has a vocabulary of {hf.config.vocab_size} and a context of "
                          f"{hf.config.n_positions} tokens, but the data set needs {vocab_size} and {block_size}: "
                          "use GPT-2's tokenizer (dataset=wikitext2) and data.block_size <= 1024.")
    return CausalLM(hf)


# --- Any transformers causal LM, from local files only ------------------------------------------------

def _has_weights(d: Path) -> bool:
    return any(d.glob("*.safetensors")) or any(d.glob("pytorch_model*.bin")) or any(d.glob("*.safetensors.index.json"))


def hf_causal_lm(vocab_size: int, block_size: int, name_or_path: Optional[str] = None,
                 config: Optional[dict] = None, pretrained: Optional[bool] = None) -> nn.Module:
    """Any ``transformers`` causal language model, never from the hub (``local_files_only``):

    - ``name_or_path`` a local directory with weights: ``AutoModelForCausalLM.from_pretrained``
      (in float32), with ``config`` as overrides (e.g. dropout); its vocabulary and context must
      cover the data set's;
    - a directory with only ``config.json`` (or ``pretrained=false``), or ``config`` given inline
      with its ``model_type`` (``{model_type: gpt2, n_layer: 2, ...}``): a fresh model
      (``AutoModelForCausalLM.from_config``) whose vocabulary and context length are the data set's.
    """
    from omegaconf import DictConfig, OmegaConf
    from transformers import AutoConfig, AutoModelForCausalLM

    extra = OmegaConf.to_container(config, resolve=True) if isinstance(config, DictConfig) else dict(config or {})
    fix = ("On a machine with a network run `python -c \"from transformers import AutoModelForCausalLM as M; "
           "M.from_pretrained('NAME').save_pretrained('DIR')\"` and copy DIR here (echo-run never downloads "
           "models), or give model.config={model_type: gpt2, ...} for a fresh model.")
    if name_or_path is None:
        if pretrained:
            raise ConfigError(f"model.pretrained=true needs model.name_or_path=DIR, a directory with weights. {fix}")
        if "model_type" not in extra:
            raise ConfigError("model=hf_causal_lm needs model.name_or_path=DIR (a local model directory) or "
                              "model.config with a model_type (e.g. model.config={model_type: gpt2, n_layer: 2, "
                              "n_head: 2, n_embd: 64}).")
        try:
            cfg = AutoConfig.for_model(**extra)
        except (ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"model.config could not make a transformers config ({type(e).__name__}: "
                              f"{str(e)[:200]}): model_type must be a transformers model type such as gpt2, "
                              "llama, qwen2 or gpt_neox.") from None
        source = f"model_type={extra['model_type']}"
    else:
        d = Path(name_or_path).expanduser()
        if not d.is_dir() or not (d / "config.json").is_file():
            raise ConfigError(f"model.name_or_path={name_or_path} is not a local model directory (one with "
                              f"config.json). {fix}")
        if pretrained is None:
            pretrained = _has_weights(d)
        if pretrained:
            if not _has_weights(d):
                raise ConfigError(f"model.pretrained=true but {d} has no weights (*.safetensors or "
                                  f"pytorch_model*.bin). {fix}")
            try:
                hf = AutoModelForCausalLM.from_pretrained(str(d), local_files_only=True, dtype=torch.float32,
                                                          **extra)
            # transformers: missing or unreadable files (OSError), a malformed config (ValueError,
            # KeyError), weights of other shapes (RuntimeError), a damaged safetensors file.
            except (OSError, ValueError, KeyError, RuntimeError, _safetensor_error()) as e:
                raise ConfigError(f"the causal LM in {d} could not be loaded ({type(e).__name__}: {str(e)[:200]}). "
                                  f"{fix}") from None
            n_ctx = getattr(hf.config, "max_position_embeddings", None)
            if hf.config.vocab_size < vocab_size or (n_ctx is not None and n_ctx < block_size):
                raise ConfigError(
                    f"the pretrained model in {d} has a vocabulary of {hf.config.vocab_size} and a context of {n_ctx} "
                    f"tokens, but the data set needs {vocab_size} and {block_size}: tokenise with the model's own "
                    "tokenizer (data.tokenizer=DIR) and choose data.block_size <= its context.")
            return CausalLM(hf)
        try:
            cfg = AutoConfig.from_pretrained(str(d), local_files_only=True, **extra)
        except (OSError, ValueError, KeyError) as e:  # unreadable, not JSON (ValueError), an unknown model_type
            raise ConfigError(f"the config.json in {d} could not be read ({type(e).__name__}: "
                              f"{str(e)[:200]}).") from None
        source = str(d)
    # A fresh model: its vocabulary is the data set's tokenizer's, its context the block size.
    cfg.vocab_size = vocab_size
    if hasattr(cfg, "max_position_embeddings"):  # GPT-2's n_positions too, through attribute_map
        cfg.max_position_embeddings = block_size
    for k in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if isinstance(getattr(cfg, k, None), int) and getattr(cfg, k) >= vocab_size:
            setattr(cfg, k, vocab_size - 1)  # a special id past a small vocabulary: its last id
    try:
        hf = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)  # not a config.json's bfloat16
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{source} is not a causal language model that transformers can build "
                          f"({type(e).__name__}: {str(e)[:200]}).") from None
    return CausalLM(hf)
