"""A run's parts, built from its config in one place: the model (on its device, in its memory
format), the optimizer, the mixed-precision context with its gradient scaler, and the training
pipeline with every argument it takes from the config.

The trainer, ``echo-advise measure``, the benchmarks and the GPU smoke all build them here, so that
what is measured or benchmarked is what trains. Each part is its own function: the trainer builds
the communication strategy between the model and the optimizer, and the advisor names the part that
failed to build.
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import nn

from . import accel, models, pipeline
from .config import build
from .data import Splits
from .schema import OptimKeys
from .step import amp_context, amp_mode, grad_scaler


def model(cfg, info: dict, dev: torch.device) -> nn.Module:
    """``cfg.model`` for a data set with facts ``info``, on ``dev``, channels_last where it helps (laid
    out before any wrapper sees the parameters). Its initial weights come from torch's global generator."""
    return accel.prepare(models.build(cfg.model, info).to(dev), cfg.train, dev, info)


def optimizer(cfg, net: nn.Module) -> torch.optim.Optimizer:
    """``cfg.optim`` over the parameters of ``net``."""
    return build(cfg.optim, OptimKeys)(net.parameters())


def precision(train, dev: torch.device) -> Tuple[object, torch.amp.GradScaler]:
    """(the autocast context factory, the gradient scaler) of ``train.amp`` on ``dev``."""
    mode = amp_mode(train, dev)
    return amp_context(mode, dev), grad_scaler(mode, dev)


def pin_memory(d, dev: torch.device) -> bool:
    """``data.pin_memory``; unset: on with CUDA, where the copy to the device can then overlap."""
    return d.pin_memory if d.pin_memory is not None else dev.type == "cuda"


def source(cfg, splits: Splits, dev: torch.device, rank: int = 0, world: int = 1) -> pipeline.Source:
    """The training pipeline of one rank, with everything the config says about it."""
    d, p = cfg.data, cfg.pipeline
    return pipeline.build(
        splits.train, splits.train_transform, batch_size=d.batch_size, seed=cfg.seed, rank=rank, world=world,
        workers=d.workers, prefetch_factor=d.prefetch_factor, pin_memory=pin_memory(d, dev),
        persistent_workers=d.persistent_workers, examples_per_s=p.examples_per_s, prefetch=p.prefetch,
        background=p.background, device=dev, channels_last=accel.uses_channels_last(cfg.train, dev, splits.info))


def eval_batches(cfg, test, dev: torch.device):
    """The batches of ``test`` (the test set, or eval.subset's part of it), as every evaluation reads them."""
    return pipeline.eval_batches(test, cfg.eval.batch_size, cfg.data.workers, dev, pin_memory(cfg.data, dev))
