"""Accelerator details kept out of the training loop: pinned memory and non-blocking copies,
``channels_last`` for CNNs and ``torch.compile``, each only where it helps (a CUDA device)."""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn


def transfer(dev: torch.device, channels_last: bool) -> Callable[[Sequence[torch.Tensor]], list]:
    """Moves a fresh batch to ``dev`` once. On CUDA the batch goes through pinned memory so the copy
    is asynchronous (``non_blocking``), and images (4-D) are laid out channels_last for the CNN."""
    if dev.type != "cuda":
        return lambda b: [t.to(dev) for t in b]
    fmt = torch.channels_last if channels_last else torch.contiguous_format

    def move(b):
        out = [t.pin_memory().to(dev, non_blocking=True) for t in b]
        return [t.contiguous(memory_format=fmt) if t.dim() == 4 else t for t in out]

    return move


def uses_channels_last(t, dev: torch.device, info: dict) -> bool:
    """channels_last for CNNs (data sets with image channels) on CUDA, where tensor cores want it."""
    return bool(t.channels_last) and dev.type == "cuda" and "in_channels" in info


def prepare(model: nn.Module, t, dev: torch.device, info: dict) -> nn.Module:
    """Lays out a CNN's weights channels_last on CUDA (before any wrapper sees the parameters)."""
    if uses_channels_last(t, dev, info):
        model.to(memory_format=torch.channels_last)
    return model


def compile_net(net: nn.Module, t) -> nn.Module:
    """``torch.compile`` when ``train.compile=true``; attributes (DDP's ``no_sync``) pass through."""
    return torch.compile(net) if t.compile else net


def sync(dev: torch.device) -> None:
    """Wait for the work queued on ``dev``: a clock read after it counts that work (a no-op on CPU)."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def deterministic(on: bool) -> None:
    """``train.deterministic``: deterministic kernels only (an error where none exists), as
    ``torch.use_deterministic_algorithms`` documents, with the cuBLAS workspace it asks for."""
    if on:
        import os

        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(on)
