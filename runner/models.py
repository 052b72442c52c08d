"""Models, built from config with ``hydra.utils.instantiate``. Every model maps a batch of inputs
to logits, so one loss function serves classification and language modelling."""
from __future__ import annotations

import torch
from torch import nn


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


def build(model_cfg, info: dict) -> nn.Module:
    """Instantiate ``model_cfg`` (with ``_target_``), passing the data set's facts (classes,
    channels, vocabulary...) that the target's signature asks for and the config leaves unset."""
    import inspect

    from hydra.utils import get_method, instantiate

    from hydra.errors import InstantiationException

    from .schema import ConfigError

    params = inspect.signature(get_method(model_cfg._target_)).parameters
    extra = {k: v for k, v in info.items() if k in params and k not in model_cfg}
    try:
        return instantiate(model_cfg, **extra)
    except InstantiationException as e:
        if isinstance(e.__cause__, ConfigError):  # a fixable setting: the CLI prints it and exits 2
            raise e.__cause__ from None
        raise


# --- The paper's CNNs (torchvision), adapted to 32x32 inputs ----------------------------------------

def _stem(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """The first convolution with ``in_channels`` inputs and stride 1 (a 32x32 image has no pixels
    to spare for an ImageNet stem's early down-sampling)."""
    return nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, 1, conv.padding, bias=conv.bias is not None)


def _cifar_strides(features: nn.Module, in_channels: int) -> None:
    """Adapt an ImageNet MobileNet to 32x32: a stride-1 stem and the first stride-2 block at stride 1,
    so the network down-samples 8x instead of 32x (the usual CIFAR adaptation, 32x32 -> 4x4)."""
    features[0][0] = _stem(features[0][0], in_channels)
    for m in features[1:].modules():
        if isinstance(m, nn.Conv2d) and m.stride == (2, 2):
            m.stride = (1, 1)  # padding is (k-1)/2, so the map keeps its size
            break


def resnet18(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """torchvision's ResNet-18 for 32x32 images: a 3x3 stride-1 stem and no max-pool."""
    from torchvision.models import resnet18 as tv_resnet18

    m = tv_resnet18(num_classes=num_classes)
    m.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
    m.maxpool = nn.Identity()
    return m


def mobilenet_v2(num_classes: int = 10, in_channels: int = 3, width_mult: float = 1.0, dropout: float = 0.2) -> nn.Module:
    """torchvision's MobileNetV2 with strides adapted to 32x32 images."""
    from torchvision.models import mobilenet_v2 as tv_mobilenet_v2

    m = tv_mobilenet_v2(num_classes=num_classes, width_mult=width_mult, dropout=dropout)
    _cifar_strides(m.features, in_channels)
    return m


def mobilenet_v3(size: str = "small", num_classes: int = 10, in_channels: int = 3, dropout: float = 0.2) -> nn.Module:
    """torchvision's MobileNetV3 (``small`` or ``large``) with strides adapted to 32x32 images."""
    from torchvision import models as tvm

    if size not in ("small", "large"):
        from .schema import ConfigError
        raise ConfigError(f"model.size={size!r} is not a MobileNetV3 size: choose small or large.")
    m = getattr(tvm, f"mobilenet_v3_{size}")(num_classes=num_classes, dropout=dropout)
    _cifar_strides(m.features, in_channels)
    return m


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

    from .schema import ConfigError

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
    except Exception as e:
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
