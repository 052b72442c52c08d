"""Statistics over seeds: intervals for a mean, paired comparisons matched by seed, the best
learning rate at equal example loads, and the mean curve with its band.

Intervals are two-sided at ``confidence`` (95 % by default):
- ``t_interval``: Student's t interval for the mean over seeds (``scipy.stats.t``): the seeds are
  few (3-5), so a normal interval would be too narrow.
- ``bootstrap_interval``: ``scipy.stats.bootstrap`` with the BCa method (bias-corrected and
  accelerated; scipy's default) and a fixed generator, so the same runs give the same interval. With
  3-5 seeds a bootstrap interval is too narrow; it is reported beside the t interval, never alone.
- ``paired_ratio``: baseline / method of a time to target (> 1: the method needs less), seeds matched
  by seed, as the geometric mean of the per-seed ratios with a t interval on the log ratios
  (exponentiated back): the ratio of two times is skewed, its logarithm much less so.
- ``paired_difference``: method - baseline of a final metric, matched by seed, with a t interval.

No interval comes from one value (``n=1``); an estimate says so in its note. A seed that missed the
target has no time to target: averaging over the seeds that reached it would flatter a method, so an
estimate with a missing seed has no value and its note reads ``not reached by k of n seeds``.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import scipy.stats

from .runs import ReportError, Run, finite, group, last_x, series, to_target, value_at

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Estimate:
    value: float      # the mean, the geometric-mean ratio or the mean difference; NaN when none
    lo: float         # the interval; NaN when there is none (see note)
    hi: float
    n: int            # the values (seeds, or pairs of seeds) it rests on
    of: int           # the seeds there were
    note: str = ""    # why there is no value or no interval, what was left out

    @property
    def has_value(self) -> bool:
        return finite(self.value)

    @property
    def has_interval(self) -> bool:
        return finite(self.lo) and finite(self.hi)


def none(n: int, of: int, note: str) -> Estimate:
    return Estimate(math.nan, math.nan, math.nan, n, of, note)


def t_interval(values, confidence: float = CONFIDENCE) -> Estimate:
    """The mean of ``values`` with its Student-t interval (n - 1 degrees of freedom)."""
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        return none(0, 0, "no values")
    if not np.isfinite(x).all():
        raise ValueError("t_interval takes finite values; leave out (and count) the missing ones first")
    m = float(x.mean())
    if len(x) == 1:
        return Estimate(m, math.nan, math.nan, 1, 1, "one seed: no interval")
    sem = float(x.std(ddof=1)) / math.sqrt(len(x))
    if sem == 0.0:
        return Estimate(m, m, m, len(x), len(x), "no spread over seeds")
    half = float(scipy.stats.t.ppf(0.5 + confidence / 2, len(x) - 1)) * sem
    return Estimate(m, m - half, m + half, len(x), len(x))


def bootstrap_interval(values, confidence: float = CONFIDENCE, method: str = "BCa", n_resamples: int = 9999,
                       seed: int = 0) -> Estimate:
    """The mean of ``values`` with a bootstrap interval (``scipy.stats.bootstrap``, BCa by default,
    the generator seeded with ``seed``)."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return none(len(x), len(x), "one seed: no interval") if len(x) else none(0, 0, "no values")
    m = float(x.mean())
    if np.ptp(x) == 0:
        return Estimate(m, m, m, len(x), len(x), "no spread over seeds")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a degenerate resampling shows as NaN, reported below
        ci = scipy.stats.bootstrap((x,), np.mean, confidence_level=confidence, method=method,
                                   n_resamples=n_resamples, rng=np.random.default_rng(seed)).confidence_interval
    if not (finite(ci.low) and finite(ci.high)):
        return Estimate(m, math.nan, math.nan, len(x), len(x), f"bootstrap ({method}) degenerate: no interval")
    return Estimate(m, float(ci.low), float(ci.high), len(x), len(x))


def over_seeds(values: dict, confidence: float = CONFIDENCE, missing: str = "not reached") -> Estimate:
    """{seed: value or None}: the t interval of the mean, or none if a seed has no value."""
    vals = list(values.values())
    miss = sum(not finite(v) for v in vals)
    if miss:
        return none(len(vals) - miss, len(vals), f"{missing} by {miss} of {len(vals)} seeds")
    return t_interval(vals, confidence)


def _pairs(base: dict, method: dict, missing: str, base_name: str, method_name: str):
    """(the seeds both sides ran, a note on seeds without a value or None, a note on unpaired seeds)."""
    seeds = sorted(set(base) & set(method))
    unmatched = len(set(base) ^ set(method))
    if not seeds:
        return seeds, f"no seed in common ({method_name}: {sorted(method)}; {base_name}: {sorted(base)})", ""
    miss = [f"{missing} by {k} of {len(seeds)} seeds ({name})"
            for name, side in ((method_name, method), (base_name, base))
            if (k := sum(not finite(side[s]) for s in seeds))]
    return seeds, "; ".join(miss) or None, (f"{unmatched} unpaired seed(s) left out" if unmatched else "")


def _with_note(e: Estimate, note: str, of: int) -> Estimate:
    joined = "; ".join(n for n in (e.note, note) if n)
    return Estimate(e.value, e.lo, e.hi, e.n, of, joined)


def paired_ratio(base: dict, method: dict, confidence: float = CONFIDENCE, base_name: str = "baseline",
                 method_name: str = "method") -> Estimate:
    """{seed: time to target or None}: baseline / method, the geometric mean over seeds with a t
    interval on the log ratios. A seed that missed the target on either side leaves no estimate."""
    seeds, missing, unpaired = _pairs(base, method, "not reached", base_name, method_name)
    of = len(set(base) | set(method))
    if missing is not None:
        return none(len(seeds), of, "; ".join(n for n in (missing, unpaired) if n))
    b = np.array([base[s] for s in seeds], dtype=float)
    m = np.array([method[s] for s in seeds], dtype=float)
    if (b <= 0).any() or (m <= 0).any():
        return none(len(seeds), of, "the target was met at the first record (a time of 0): no ratio")
    e = t_interval(np.log(b) - np.log(m), confidence)
    e = Estimate(math.exp(e.value), math.exp(e.lo) if e.has_interval else math.nan,
                 math.exp(e.hi) if e.has_interval else math.nan, e.n, e.of, e.note)
    return _with_note(e, unpaired, of)


def paired_difference(base: dict, method: dict, confidence: float = CONFIDENCE, base_name: str = "baseline",
                      method_name: str = "method") -> Estimate:
    """{seed: final metric (None: diverged)}: method - baseline, the mean over seeds and its t interval."""
    seeds, missing, unpaired = _pairs(base, method, "diverged", base_name, method_name)
    of = len(set(base) | set(method))
    if missing is not None:
        return none(len(seeds), of, "; ".join(n for n in (missing, unpaired) if n))
    d = np.array([method[s] for s in seeds], dtype=float) - np.array([base[s] for s in seeds], dtype=float)
    return _with_note(t_interval(d, confidence), unpaired, of)


# ------------------------------------------------------------------------------- per-seed values
def by_seed(runs, fn: Callable[[Run], Optional[float]]) -> dict:
    """{seed: fn(run)}; two runs of one group with the same seed cannot be told apart in a pairing."""
    out: dict = {}
    for r in runs:
        if r.seed in out:
            other = next(o for o in runs if o.seed == r.seed and o is not r)
            raise ReportError(f"two runs of {r.label} at lr {r.lr:g} have seed {r.seed}: {other.dir} and {r.dir}. "
                              "A comparison matched by seed needs one run per seed: give only one of them "
                              "(remove a directory from the command line, or filter the runs).")
        v = fn(r)
        out[r.seed] = float(v) if finite(v) else None
    return out


def recorded(runs, field: str) -> bool:
    """Do the runs keep this counter (sim_s needs a hardware profile)?"""
    return any(finite(r.get(field)) for run in runs for r in run.records[1:])


def to_target_by_seed(runs, field: str, target: dict) -> dict:
    """{seed: ``field`` at the first record at the target, or None where the seed missed it}."""
    def f(run):
        hit = to_target(run, target["metric"], target["value"], target["mode"])
        return None if hit is None else hit.get(field)
    return by_seed(runs, f)


def to_target_estimate(runs, field: str, target: Optional[dict], confidence: float = CONFIDENCE) -> Estimate:
    if target is None:
        return none(0, len(runs), "no target")
    if not recorded(runs, field):
        return none(0, len(runs), f"{field} not recorded")
    return over_seeds(to_target_by_seed(runs, field, target), confidence)


def final_by_seed(runs, metric: str) -> dict:
    return by_seed(runs, lambda r: r.final(metric))


def final_estimate(runs, metric: str, confidence: float = CONFIDENCE) -> Estimate:
    return over_seeds(final_by_seed(runs, metric), confidence, missing="diverged")


# ------------------------------------------------------------------------- best learning rate
def best_lr_at_equal_loads(runs, metric: str, mode: str) -> Optional[dict]:
    """The best learning rate of one method's runs by the mean over seeds of ``metric`` at equal
    example loads: interpolated at the largest example-load count that every run reached, so that a
    learning rate whose runs went further is not favoured. A learning rate where a seed diverged or
    did not finish is not eligible. Returns {lr, loads, scores {lr: mean}} or None (none eligible)."""
    eligible = [rs for (lr,), rs in group(runs, "lr").items() if all(r.status == "complete" for r in rs)]
    if not eligible:
        return None
    t = (eligible[0][0].config.get("target") or {})
    if t.get("stop") and t.get("value") is not None:
        # Runs that end at the target stop at different loads: equal loads would be the earliest stop of
        # all. They are ranked by the mean loads to the target instead; a seed that missed it ranks last.
        def loads_to_target(r) -> float:
            hit = to_target(r, t.get("metric", metric), t["value"], t.get("mode", mode))
            return float(hit["example_loads"]) if hit else math.inf

        scores = {rs[0].lr: float(np.mean([loads_to_target(r) for r in rs])) for rs in eligible}
        best = min(scores, key=scores.get)
        return {"lr": best, "loads": None, "scores": scores, "by": "loads to target"}
    ends = [last_x(r, "example_loads", metric) for rs in eligible for r in rs]
    if not all(finite(e) for e in ends):
        return None
    at = min(ends)
    scores = {rs[0].lr: float(np.mean([value_at(r, "example_loads", metric, at) for r in rs])) for rs in eligible}
    pick = max if mode == "max" else min
    best = pick(scores, key=scores.get)
    return {"lr": best, "loads": at, "scores": scores, "by": "metric at equal loads"}


# ---------------------------------------------------------------------------------- curve maths
def mean_band(runs, x: str, y: str) -> Optional[tuple]:
    """(grid, mean, lo, hi) over the runs' seeds. Records of different seeds fall at slightly
    different x (a stochastic load schedule crosses the evaluation points at different loads), so
    each seed is interpolated onto the union of their x values within the range they all cover."""
    ss = [s for s in (series(r, x, y) for r in runs) if len(s[0])]
    if not ss:
        return None
    lo_x, hi_x = max(s[0][0] for s in ss), min(s[0][-1] for s in ss)
    grid = np.unique(np.concatenate([s[0] for s in ss]))
    grid = grid[(grid >= lo_x) & (grid <= hi_x)]
    if len(grid) == 0:
        return None
    ys = np.stack([np.interp(grid, sx, sy) for sx, sy in ss])
    return grid, ys.mean(0), ys.min(0), ys.max(0)


def claim_points(runs, metric: str, value: float, mode: str) -> list:
    """Per reuse level (1/p): the mean over seeds of loads, steps and sim_s to target; a level where
    any seed missed the target is 'not reached' (a mean over the lucky seeds would flatter it)."""
    pts = []
    for (r_,), rs in group([r for r in runs if r.reuse is not None], "reuse").items():
        hits = [to_target(r, metric, value, mode) for r in rs]
        p = {"reuse": r_, "seeds": len(rs), "reached": sum(h is not None for h in hits)}
        for k in ("example_loads", "step", "sim_s"):
            vals = [h[k] for h in hits if h is not None and finite(h.get(k))]
            p[k] = float(np.mean(vals)) if vals and p["reached"] == len(rs) else math.nan
            p[k + "_sd"] = float(np.std(vals)) if len(vals) > 1 and p["reached"] == len(rs) else 0.0
        pts.append(p)
    return pts
