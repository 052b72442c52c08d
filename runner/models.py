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

    params = inspect.signature(get_method(model_cfg._target_)).parameters
    extra = {k: v for k, v in info.items() if k in params and k not in model_cfg}
    return instantiate(model_cfg, **extra)
