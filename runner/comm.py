"""Communication strategies for data-parallel training (config group ``comm``).

The training loop talks to a strategy through five calls: ``wrap(model)`` before training,
``backward_context()`` around each backward pass, ``should_step()`` after it (False while gradient
accumulation goes on), ``after_step(fresh, u)`` after each step (model averaging), and ``agree`` /
``reduce_max`` for the few scalars that ranks must share. ``rounds`` and ``bytes`` count the model
communication actually made.
"""
from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn


class Local:
    """One process: nothing to communicate."""

    name = "none"

    def __init__(self) -> None:
        self.rounds, self.bytes = 0, 0

    def wrap(self, model: nn.Module) -> nn.Module:
        return model

    def backward_context(self):
        return nullcontext()

    def should_step(self) -> bool:
        return True

    def after_step(self, fresh: bool, u: float) -> int:
        """Communicate if this step calls for it; returns the bytes sent (0 when it did not)."""
        return 0

    def agree(self, flag: bool) -> bool:
        return flag

    def reduce_max(self, values: list) -> list:
        return values

    def state_dict(self) -> dict:
        return {"rounds": self.rounds, "bytes": self.bytes}

    def load_state_dict(self, st: dict) -> None:
        self.rounds, self.bytes = st["rounds"], st["bytes"]


def build(cfg, model: nn.Module, ctx) -> Local:
    if ctx.world == 1:
        return Local()
    raise NotImplementedError("data-parallel communication strategies are not built yet")
