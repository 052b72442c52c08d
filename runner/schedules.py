"""Schedules p(u) for the probability of loading a fresh batch, and the learning rate, as pure
functions of the budget fraction u in [0, 1]. The ``schedule`` config group builds p(u) from its
``_target_`` (one of the factories below, or any function of yours that returns u -> p)."""
from __future__ import annotations

import bisect
import math
from typing import Callable, Sequence

Schedule = Callable[[float], float]


def none() -> Schedule:
    return lambda u: 1.0


def constant(p: float) -> Schedule:
    return lambda u: p


def cosine(p_max: float, p_min: float) -> Schedule:
    return lambda u: p_min + (p_max - p_min) * (1.0 + math.cos(math.pi * _clip(u))) / 2.0


def linear(p_max: float, p_min: float) -> Schedule:
    return lambda u: p_max + (p_min - p_max) * _clip(u)


def step(p_max: float, gamma: float, milestones: Sequence[float]) -> Schedule:
    ms = sorted(milestones)
    return lambda u: p_max * gamma ** bisect.bisect_right(ms, _clip(u))


def _clip(u: float) -> float:
    return min(max(u, 0.0), 1.0)


def lr_at(o, u: float) -> float:
    """The learning rate at budget fraction u for an OptimConfig ``o``: warm-up, then its schedule."""
    if o.warmup > 0 and u < o.warmup:
        return o.lr * (u / o.warmup)
    v = (u - o.warmup) / (1.0 - o.warmup) if o.warmup > 0 else u
    lo = o.lr * o.lr_min_ratio
    if o.lr_schedule == "constant":
        return o.lr
    if o.lr_schedule == "cosine":
        return cosine(o.lr, lo)(v)
    if o.lr_schedule == "linear":
        return linear(o.lr, lo)(v)
    return step(o.lr, o.gamma, list(o.milestones))(v)
