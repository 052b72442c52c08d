"""Accelerator details kept out of the training loop: ``channels_last`` for CNNs, ``torch.compile``,
device synchronisation and deterministic kernels (pinned memory and the copy to the device are the
pipeline's)."""
from __future__ import annotations


import torch
from torch import nn


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
