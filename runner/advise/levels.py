"""Echo levels: the overrides that select each one, and how much each one echoes.

A level is written as on the command line (``--levels``):

    none        plain SGD (every step loads a fresh batch): the baseline
    p=0.25      Algorithm 1 with a constant p: on average 1/p steps per fresh batch
    cosine      Algorithm 1 with a diminishing p (also linear, step: any schedule of conf/schedule/)
    adaptive    a fresh batch when the pipeline has one ready, an echo otherwise
    e=2         batch echoing: every fresh batch used e times (Choi et al., 2019)

The amount of echoing of a level is its expected number of steps per fresh batch at a loader ratio
R (batch load time / step time): 1 for none, 1/p for a constant p, 1 / (the mean of p(u) over the
budget) for a schedule, e for batch echoing and max(R, 1) for adaptive (the simulated clock's steady
state). This is the order that the recommendation keeps monotone in R ("slower loaders never get
less echoing"); levels of equal amount are interchangeable in it.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence, Tuple

from ..config import CONF_DIR
from ..errors import ConfigError

DEFAULT = ("none", "p=0.5", "p=0.25", "cosine", "adaptive", "e=2", "e=4")
_NUM = r"([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"


@dataclass(frozen=True)
class Level:
    name: str  # as written: "p=0.25"
    overrides: Tuple[str, ...]  # what selects it, after the workload's own overrides

    @property
    def slug(self) -> str:
        """The name in a directory name (no '=')."""
        return self.name.replace("=", "")


def _schedules() -> List[str]:
    return sorted(p.stem for p in (Path(CONF_DIR) / "schedule").glob("*.yaml"))


def parse(spec: str) -> Level:
    """A level from its name; ConfigError for anything else."""
    s = spec.strip()
    if s == "none":
        return Level(s, ("echo=stochastic", "schedule=none"))
    if s == "adaptive":
        return Level(s, ("echo=adaptive", "schedule=none"))
    m = re.fullmatch(r"p=" + _NUM, s)
    if m and 0 < float(m.group(1)) <= 1:
        return Level(f"p={float(m.group(1)):g}", ("echo=stochastic", "schedule=constant",
                                                  f"schedule.p={float(m.group(1)):g}"))
    m = re.fullmatch(r"e=" + _NUM, s)
    if m and float(m.group(1)) >= 1:
        return Level(f"e={float(m.group(1)):g}", ("echo=batch", f"echo.factor={float(m.group(1)):g}",
                                                  "schedule=none"))
    if s in _schedules() and s not in ("none", "constant"):
        return Level(s, ("echo=stochastic", f"schedule={s}"))
    raise ConfigError(
        f"--levels: {spec!r} is not an echo level. The levels are none, p=P (a constant probability of "
        f"loading, 0 < P <= 1), e=E (batch echoing, E >= 1), adaptive, and the schedules "
        f"{', '.join(x for x in _schedules() if x not in ('none', 'constant'))}; e.g. --levels none p=0.25 "
        "cosine adaptive e=2. (Overrides of the workload go before the options, or after --.)")


def parse_all(specs: Sequence[str]) -> List[Level]:
    """The levels of ``--levels`` (spaces or commas), plain SGD always first, no level twice."""
    names = [x for s in specs for x in str(s).split(",") if x.strip()]
    out: List[Level] = [parse("none")]
    for n in names:
        lv = parse(n)
        if lv.name not in {o.name for o in out}:
            out.append(lv)
    return out


def amount(cfg, R: float) -> float:
    """Expected steps per fresh batch of the composed run config ``cfg`` at loader ratio ``R``."""
    policy = cfg.echo.policy
    if policy == "adaptive":
        return max(float(R), 1.0)
    if policy in ("batch", "example"):
        return float(cfg.echo.factor)
    from ..config import build
    from ..schema import ScheduleKeys

    p = build(cfg.schedule, ScheduleKeys)
    n = 1000
    mean_p = sum(p((i + 0.5) / n) for i in range(n)) / n  # midpoint rule over the budget fraction u
    return 1.0 / mean_p if mean_p > 0 else math.inf
