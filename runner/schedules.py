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


def lr_position(loads_before: float, loaded: float, since_load: int, ahead: float) -> float:
    """The example loads a step counts for, for the learning rate: divided by the budget's loads,
    its fraction of the data consumed (``lr_at``'s u).

    The latest load loaded ``loaded`` examples when ``loads_before`` had been loaded before it; this
    step is its ``since_load``-th reuse (0: the load's own step), and ``ahead`` further uses of the
    data already loaded are expected after this step. The latest load counts by the fraction of its
    uses that came before this step, ``f = since_load / (since_load + 1 + ahead)``::

        position = loads_before + f * loaded

    so the load's own step is at the fraction loaded before it, as without echoing, and its echoes
    move on towards the next load; f < 1, so even the last echo of the last batch is at u < 1
    (position < loads_before + loaded <= the budget), and a decaying rate never reaches its floor
    while a step still trains (with lr_min_ratio 0, that floor is a step of size 0).

    ``ahead`` (the loop's ``uses_ahead``): batch echoing, the uses of the batch still to come, known
    at its load (f = j/e, the j-th of e uses); stochastic echoing, the expected further uses of a
    batch when each step loads with probability p, (1 - p) / p (f = jp / (jp + 1)); p = 0 (never
    load again): infinity, f = 0; adaptive echoing, unknown, 0 (f = j / (j + 1)). Example echoing
    mixes many loads in its shuffle buffer: ``example_position``."""
    f = since_load / (since_load + 1 + ahead) if math.isfinite(ahead) else 0.0
    return loads_before + f * loaded


def example_position(loads: float, held: float, factor: float) -> float:
    """Example echoing's ``lr_position``: the ``loads`` examples loaded so far (this step's included)
    less those whose uses are still held, this step's batch and the shuffle buffer, ``held`` uses of
    examples used ``factor`` times each: ``max(0, loads - held / factor)``. With every loaded example
    used, it is the examples consumed; the last step holds its own batch, so it is below the budget,
    and the buffer's last batches, trained after the last load, move on towards it."""
    return max(0.0, loads - held / factor)


def lr_at(o, u: float) -> float:
    """The learning rate at budget fraction u for an OptimConfig ``o``: warm-up, then its schedule.

    The training loop's u for the rate is each step's own position in the budget: the largest of the
    fraction of data consumed (``lr_position``: an echo step is between its batch's load and the
    next load, never at the end of the budget), of ``budget.steps`` taken and of ``budget.sim_s``
    elapsed, each counted before the step. So u < 1 at every step and no step, echo or fresh, trains
    at the end-of-budget rate (0 for the default cosine). A record's ``lr`` is its last step's rate."""
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
