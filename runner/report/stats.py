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
- ``two_level_bootstrap``: method - baseline of a final metric from each run's per-example values
  (1/0 correct, or a language model's loss per test example), resampling seeds and test examples, the
  same example indices for both methods: the interval counts the test set as well as the seeds.
  Every estimate says what its interval rests on (``basis``): ``seeds × test examples`` or ``seeds only``.

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

from ..records import load_final_examples
from .runs import ReportError, Run, finite, group, last_x, series, to_target, value_at

CONFIDENCE = 0.95
SEEDS_ONLY = "seeds only"
SEEDS_AND_EXAMPLES = "seeds × test examples"


@dataclass(frozen=True)
class Estimate:
    value: float      # the mean, the geometric-mean ratio or the mean difference; NaN when none
    lo: float         # the interval; NaN when there is none (see note)
    hi: float
    n: int            # the values (seeds, or pairs of seeds) it rests on
    of: int           # the seeds there were
    note: str = ""    # why there is no value or no interval, what was left out
    basis: str = SEEDS_ONLY  # what the interval resamples: seeds only, or seeds and test examples

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


# --------------------------------------------------------------- seeds and test examples together
def two_level_bootstrap(base, method, paired: bool = True, confidence: float = CONFIDENCE,
                        n_resamples: int = 4000, seed: int = 0, exp: bool = False) -> Estimate:
    """method - baseline of the mean per-example value (``base``, ``method``: arrays [seed, example]
    over the SAME test examples in the same order), with an interval from a two-level bootstrap:
    seeds are resampled with replacement within each method (one draw for both when ``paired``: row
    i of each is the same seed) and test examples with replacement, the same example indices for both
    methods. ``exp``: the estimate and interval exponentiated (mean losses -> the ratio of perplexities).

    The interval is the estimate ± t × the bootstrap's standard error, t on Satterthwaite's degrees of
    freedom from the levels' shares of the variance (S - 1 for a seed level of S seeds, N - 1 for the
    examples): a percentile interval of 3 resampled seeds has light tails, about half as wide as the
    t interval when the seeds dominate; with the test examples dominating, t is the normal quantile.

    Two corrections keep the bootstrap variance near the estimator's (the test checks it against the
    analytic variance): a seed level of S values draws S - 1 of them (the m-out-of-n bootstrap with
    m = n - 1, whose variance of a mean is the unbiased s^2/S rather than (S-1)/S of it: with 3 seeds
    a plain resample is 18 % short in standard error), and the example level resamples the seed-mean
    differences per example shrunk so that their spread is the example effect alone: the per-seed
    Bernoulli noise is already in the seed level's spread, and resampling it again would count it
    twice (the adjusted two-stage bootstrap of Davison & Hinkley 1997, section 3.8). Replicate =
    estimate + seed-level deviation + example-level deviation, vectorised in chunks."""
    value, levels, n_seeds, of, note = _replicates(base, method, paired, n_resamples, seed)
    conv = math.exp if exp else float
    if levels is None:
        return Estimate(conv(value), math.nan, math.nan, n_seeds, of, note, SEEDS_AND_EXAMPLES)
    var = [float(r.var(ddof=1)) for r, _ in levels]
    se = math.sqrt(sum(var))
    if se == 0:
        return Estimate(conv(value), conv(value), conv(value), n_seeds, of, note or "no spread", SEEDS_AND_EXAMPLES)
    df = sum(var) ** 2 / sum(v ** 2 / d for v, (_, d) in zip(var, levels) if v > 0)
    half = float(scipy.stats.t.ppf(0.5 + confidence / 2, df)) * se
    return Estimate(conv(value), conv(value - half), conv(value + half), n_seeds, of, note, SEEDS_AND_EXAMPLES)


def bootstrap_se(base, method, paired: bool = True, n_resamples: int = 4000, seed: int = 0) -> float:
    """The standard deviation of the two-level bootstrap's replicates of method - baseline."""
    levels = _replicates(base, method, paired, n_resamples, seed)[1]
    return math.nan if levels is None else float(sum(r for r, _ in levels).std(ddof=1))


def _replicates(base, method, paired: bool, n_resamples: int, seed: int) -> tuple:
    """(estimate, [(deviations of one level's replicates, its degrees of freedom)] or None, seeds,
    seeds there were, note): a seed level per side (one when paired) and the example level;
    estimate + their sum is a replicate."""
    sides = [np.asarray(method, float), np.asarray(base, float)]
    if any(x.ndim != 2 for x in sides) or sides[0].shape[1] != sides[1].shape[1]:
        raise ValueError("two_level_bootstrap takes two arrays [seed, example] over the same test examples")
    if paired and sides[0].shape[0] != sides[1].shape[0]:
        raise ValueError("paired seeds need as many seeds on both sides")
    parts = [(sides[0] - sides[1], 1.0)] if paired else [(sides[0], 1.0), (sides[1], -1.0)]
    n_seeds = min(x.shape[0] for x, _ in parts)
    N = sides[0].shape[1]
    value = float(sum(sign * x.mean() for x, sign in parts))
    of = max(x.shape[0] for x in sides)
    if n_seeds < 2 or N < 2:
        return value, None, n_seeds, of, "one seed: no interval" if n_seeds < 2 else "one test example: no interval"
    rng = np.random.default_rng(seed)
    levels = []
    col = np.zeros(N)
    noise = 0.0
    for x, sign in parts:
        S = x.shape[0]
        rows, cols, grand = x.mean(1), x.mean(0), x.mean()
        draws = rng.multinomial(S - 1, np.full(S, 1 / S), size=n_resamples) @ rows / (S - 1) - grand
        levels.append((sign * draws, S - 1))
        resid = x - rows[:, None] - cols[None, :] + grand
        noise += float((resid ** 2).sum()) / ((S - 1) * (N - 1)) / S  # the interaction's share of var(cols)
        col += sign * cols
    dev = col - col.mean()
    spread = float(dev.var(ddof=1))
    shrink = math.sqrt(max(0.0, spread - noise) / spread) if spread > 0 else 0.0
    dev = dev * shrink
    examples = np.empty(n_resamples)
    chunk = max(1, 4_000_000 // N)
    for i in range(0, n_resamples, chunk):
        k = min(chunk, n_resamples - i)
        idx = rng.integers(0, N, size=(k, N))  # the same example indices for both methods
        examples[i:i + k] = dev[idx].mean(1)
    levels.append((examples, N - 1))
    return value, levels, n_seeds, of, "" if paired else "seeds unpaired"


def examples_difference(base_runs, method_runs, metric: str, confidence: float = CONFIDENCE, ratio: bool = False,
                        base_name: str = "baseline", method_name: str = "method") -> Optional[Estimate]:
    """method - baseline of a final metric from the runs' per-example records (``ratio``: baseline ÷
    method of a perplexity, from the per-example losses), paired by seed where both ran the same
    seeds; None when a run lacks them (an older run) or the two sides were tested on different examples."""
    b, m = per_example(base_runs, metric), per_example(method_runs, metric)
    if b is None or m is None:
        return None
    (bs, bx), (ms, mx) = b, m
    if bx.shape[1] != mx.shape[1]:
        return None
    diverged = [name for name, rs in ((method_name, method_runs), (base_name, base_runs))
                if any(r.status == "diverged" for r in rs)]
    if diverged:
        return none(0, len(set(bs) | set(ms)), "diverged: " + ", ".join(diverged))
    paired = sorted(bs) == sorted(ms)
    if paired:
        order_b, order_m = np.argsort(bs), np.argsort(ms)
        bx, mx = bx[order_b], mx[order_m]
    if ratio:  # baseline ÷ method of exp(mean loss): exp(mean loss of the baseline - that of the method)
        return two_level_bootstrap(mx, bx, paired, confidence, exp=True)
    return two_level_bootstrap(bx, mx, paired, confidence)


def per_example(runs, metric: str):
    """(seeds, array [seed, example]) of the runs' per-example values at their end (correct or not for
    an accuracy, the loss for a perplexity or loss: ``runner.records``' file beside metrics.jsonl), or
    None when any run lacks them."""
    if not runs:
        return None
    rows, seeds = [], []
    for r in runs:
        try:
            got = load_final_examples(r.dir)
        except (OSError, ValueError, KeyError):  # no file (an older run) or an unreadable one: seeds only
            return None
        v = _pick_values(got, metric)
        if v is None:
            return None
        rows.append(np.asarray(v, float))
        seeds.append(r.seed)
    if len({len(x) for x in rows}) != 1:
        return None
    return seeds, np.stack(rows)


def _pick_values(got, metric: str):
    """The per-example array, if it is this metric's: right or not (booleans) for an accuracy, a loss
    per example (floats) for a perplexity or a loss."""
    if got is None:
        return None
    got = np.asarray(got)
    return got if (got.dtype == bool) == metric.endswith("acc") else None


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
def best_lr_at_equal_loads(runs, metric: str, mode: str, seeds=None) -> Optional[dict]:
    """The best learning rate of one method's runs by the mean over seeds of ``metric`` at equal
    example loads: interpolated at the largest example-load count that every run reached, so that a
    learning rate whose runs went further is not favoured. A learning rate where a seed diverged or
    did not finish is not eligible. ``seeds``: choose on these seeds only (the tuning seeds; the
    effect is then measured on others, so that the luck that picked a rate does not also measure it).
    Returns {lr, loads, scores {lr: mean}, grid, edge, seeds} or None (none eligible)."""
    if seeds is not None:
        runs = [r for r in runs if r.seed in set(seeds)]
    grid = sorted({r.lr for r in runs})
    b = _best(runs, metric, mode)
    if b is not None:
        b.update(grid=grid, edge=len(grid) > 1 and b["lr"] in (grid[0], grid[-1]),
                 seeds=sorted({r.seed for r in runs}))
    return b


def _best(runs, metric: str, mode: str) -> Optional[dict]:
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
