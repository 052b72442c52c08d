"""Components of a user's own, plugged into echo-run by ``_target_`` in the tests."""
from __future__ import annotations

import os
import signal

import torch

from runner.models import SmallCNN


def every_third(offset: int = 0):
    """A p(u) that is not a probability schedule of echo-run's: load exactly every third step (the
    loop asks once per step, in order)."""
    calls = {"n": offset}

    def p(u: float) -> float:
        calls["n"] += 1
        return 1.0 if (calls["n"] - 1) % 3 == 0 else 0.0

    return p


class RankSkewedCNN(SmallCNN):
    """A model whose initial weights differ from rank to rank (as a user's own initialisation or a
    different seed per rank would make them)."""

    def __init__(self, **kw):
        super().__init__(**kw)
        with torch.no_grad():
            for p in self.parameters():
                p.add_(float(os.environ.get("RANK", "0")))


class DeterminismProbe(SmallCNN):
    """Records whether deterministic algorithms were on while it trained."""

    seen: list = []

    def forward(self, x):
        DeterminismProbe.seen.append(torch.are_deterministic_algorithms_enabled())
        return super().forward(x)


class Tripwire(SmallCNN):
    """The small CNN, killing its own process with SIGKILL at the point ``$ECHO_RUN_TRIPWIRE`` names,
    for the tests of exact resume: ``evaluate:n`` as the n-th evaluation ends (its record not yet
    written), ``save:n`` as the n-th checkpoint asks for the weights (the record written, its
    checkpoint not). Unset, it is the small CNN."""

    def __init__(self, **kw):
        super().__init__(**kw)
        what, _, n = os.environ.get("ECHO_RUN_TRIPWIRE", "").partition(":")
        self._trip = (what, int(n or 0))
        self._seen = {"evaluate": 0, "save": 0}

    def _passed(self, what: str) -> None:
        if self._trip[0] == what:
            self._seen[what] += 1
            if self._seen[what] == self._trip[1]:
                os.kill(os.getpid(), signal.SIGKILL)

    def train(self, mode: bool = True):
        if mode and not self.training:  # the end of an evaluation
            self._passed("evaluate")
        return super().train(mode)

    def state_dict(self, *args, **kwargs):
        self._passed("save")
        return super().state_dict(*args, **kwargs)


class Warned(SmallCNN):
    """The small CNN, sending its own process SIGUSR2 (a scheduler's warning before its time limit)
    at its ``warn_at``-th training step."""

    def __init__(self, warn_at: int = 5, **kw):
        super().__init__(**kw)
        self._warn_at, self._steps = warn_at, 0

    def forward(self, x):
        if self.training:
            self._steps += 1
            if self._steps == self._warn_at:
                os.kill(os.getpid(), signal.SIGUSR2)
        return super().forward(x)
