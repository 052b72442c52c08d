"""``echo-report verdict SPEC.yaml DIR...``: the verdict table, generated from a spec of claims.

Each claim names the runs that test it, one quantity measured on them (a paired comparison of a
method with a baseline, seeds matched by seed, or a slope over reuse levels) and the side of a
threshold that the claim says the quantity is on. The verdict comes from the 95 % interval:

- **holds** when the interval lies entirely on the claimed side of the threshold (for "= X ± T":
  inside the band; for "inside predicted": inside the advisor's predicted interval);
- **does not hold** when it lies entirely on the other side (outside the band or interval);
- **inconclusive** otherwise: the interval straddles the threshold, or there is none (one seed; a
  seed that missed the target, which is never averaged away: ``not reached by k of n seeds``);
- **not informative (the reason)** when the row cannot decide whatever its interval: the baseline's
  accuracy is within ``chance_margin`` (0.05) of chance (1 / classes), or, for a claim between tuned
  methods (``lr: best``), a side's best rate is at an edge of its grid or it ran at one rate only;
- **no records** when the runs the claim reads are not there (yet): its directory, its method;
- with ``when`` (conditions), the quantity and a verdict per value of the condition keys, and the
  claim **holds** (every condition), **does not hold** (every condition), **holds only when
  hardware.ratio=4, 8** (some), or is **inconclusive** (none held; those where it does not hold are named).

No winner's curse: with ``tuning_seeds`` and ``measuring_seeds``, a tuned side's best rate is chosen
on the tuning seeds and the effect measured on the measuring seeds at that rate; each row (CSV
columns ``tuning_seeds``, ``measuring_seeds``; the Markdown cell) says which seeds did which.

Intervals: a final metric (``difference``; ``ratio`` of a perplexity) is compared by a two-level
bootstrap over seeds and test examples (``stats.two_level_bootstrap``) where every run keeps its
per-example results; otherwise, and for times to target, by a t interval over seeds. Each row says
which (CSV column ``basis``: ``seeds × test examples`` or ``seeds only``).

The spec (YAML)::

    baseline: sgd            # optional: the default comparator of every claim (default sgd)
    metric: test_acc         # optional: the metric that picks each method's best lr (default: by task)
    confidence: 0.95         # optional
    tuning_seeds: [0, 1]     # optional: the seeds that choose each best rate (default: every seed)
    measuring_seeds: [2, 3, 4]   # optional: the seeds that measure the effect (default: every seed)
    chance_margin: 0.05      # optional
    claims:
      - id: C1
        claim: Cosine echoing reaches the target in fewer example loads than SGD
        figure: results/figures/methods.png
        runs: methods                   # a sub-directory of each DIR, or a filter:
                                        #   {dir: methods, where: {KEY: VALUE or [VALUES]}} (dir optional;
                                        #   a list of sub-directories reads them together)
        quantity: speedup               # speedup | ratio | difference | slope | confirmed (below)
        of: example_loads               # the counter or metric the quantity is of
        method: cosine                  # a method label: summary.json's method, "cosine+on_load ×2" for a world size
        baseline: sgd                   # optional: overrides the spec's baseline
        holds_if: "> 1"                 # "> X", "< X", "= X ± T" or "inside predicted"
        target: 0.9                     # optional (speedup, slope): a target value, or a list (a row per target)
        lr: best                        # optional: best (default: each side at its own best rate), a
                                        #   number, or same (a row per rate both sides ran, every seed)
        when: hardware.ratio            # optional: a key or a list of keys: a verdict per value
        at: comm_rounds                 # optional (difference): the metric at the largest value of
                                        #   this counter that every run reached (equal rounds, bytes)
        across_budgets: true            # optional: compare runs of different budgets on purpose

Quantities:

- ``speedup``: baseline ÷ method of ``of`` (``example_loads``, ``step``, ``epoch``, ``wall_s``, ``sim_s``,
  ``comm_rounds``, ``comm_bytes``) at the first record that reached the target; geometric mean over
  seeds, t interval from the log ratios. > 1: the method needs less.
- ``ratio``: baseline ÷ method of the final value of ``of`` (``comm_rounds`` at the end of the budget;
  ``test_ppl``: > 1 when the method's perplexity is lower).
- ``difference``: method − baseline of the final value of ``of`` (e.g. ``test_acc``), or at ``at``.
- ``slope``: the least-squares slope of log(``of`` to target) against log(1/p) over the reuse levels
  of the runs (SGD is 1/p = 1, Algorithm 1 with constant p), each level at its own best rate, one
  slope per seed with a t interval over seeds; the Theorem's linear speed-up is -1.
- ``confirmed``: the advisor's measured speed-up with its interval (confirm.json above the runs)
  against the interval it predicted (``holds_if: inside predicted``).

Keys in ``where`` and ``when`` are dotted config keys (``hardware.ratio``, ``optim.lr``, ``schedule.p``)
or a run's labels (``method``, ``world_size``, ``seed``, ``lr``). Each side's best learning rate is the
one with the best mean ``metric`` at equal example loads (``stats.best_lr_at_equal_loads``). Runs of
more than one data set, model, budget or world size in one comparison are refused: narrow ``where``
or add the key to ``when``.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import yaml

from .runs import (ReportError, cfg_get, default_metric, finite, find_runs, group, last_x, mode_of, target_of,
                   value_at)
from .stats import (CONFIDENCE, Estimate, best_lr_at_equal_loads, by_seed, examples_difference, final_by_seed,
                    final_estimate, none, over_seeds, paired_difference, paired_ratio, to_target_by_seed)
from .tables import fmt, markdown, unrecorded

QUANTITIES = ("speedup", "ratio", "difference", "slope", "confirmed")
CLAIM_KEYS = {"id", "claim", "figure", "runs", "quantity", "of", "method", "baseline", "holds_if", "target", "lr",
              "when", "metric", "at", "across_budgets"}
TOP_KEYS = {"baseline", "metric", "confidence", "claims", "tuning_seeds", "measuring_seeds", "chance_margin"}
NO_RECORDS = "no records"
NOT_INFORMATIVE = "not informative"
CHANCE_MARGIN = 0.05  # a baseline accuracy within this of 1/classes cannot tell methods apart
CLASSES = {"digits": 10, "mnist": 10, "fashion_mnist": 10, "cifar10": 10, "cifar100": 100}


class NoRecords(Exception):
    """The runs a claim reads are not there (yet): its row says so instead of failing the table."""


def load_spec(path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ReportError(f"the verdict spec {p} does not exist: give a YAML file with a list of claims "
                          "(see `echo-report verdict --help` for its format).")
    try:
        spec = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ReportError(f"the verdict spec {p} is not valid YAML ({e}); fix it and run again.") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("claims"), list) or not spec["claims"]:
        raise ReportError(f"the verdict spec {p} needs a non-empty list under `claims:` (each claim a mapping "
                          "with id, claim, figure, runs, quantity, of, method, holds_if).")
    _unknown(set(spec) - TOP_KEYS, f"the top level of {p}", TOP_KEYS)
    for i, c in enumerate(spec["claims"]):
        where = f"claim {c.get('id', i + 1)!r} of {p}" if isinstance(c, dict) else f"claim {i + 1} of {p}"
        if not isinstance(c, dict):
            raise ReportError(f"{where} is not a mapping: each claim is id, claim, figure, runs, quantity, ...")
        _unknown(set(c) - CLAIM_KEYS, where, CLAIM_KEYS)
        missing = [k for k in ("id", "claim", "figure", "runs", "quantity", "of", "method", "holds_if") if k not in c]
        if missing:
            raise ReportError(f"{where} lacks {', '.join(missing)}: every claim names them (see the format in "
                              "`echo-report verdict --help`).")
        if c["quantity"] not in QUANTITIES:
            raise ReportError(f"{where}: quantity {c['quantity']!r} is not one of {', '.join(QUANTITIES)}.")
        rule(c, where)
    both = set(_seeds(spec, "tuning_seeds") or []) & set(_seeds(spec, "measuring_seeds") or [])
    if both:
        raise ReportError(f"{p}: seed(s) {sorted(both)} are in both tuning_seeds and measuring_seeds; the seeds that "
                          "choose a rate must not also measure its effect. Give them apart.")
    return spec


def _unknown(keys: set, where: str, allowed: set) -> None:
    if keys:
        raise ReportError(f"{where} has unknown key(s) {', '.join(sorted(map(str, keys)))}; the keys are "
                          f"{', '.join(sorted(allowed))}.")


def rule(claim: dict, where: str = "") -> tuple:
    """(side, threshold) from ``holds_if``: ("<" or ">", X), ("=", (X, T)) for "= X ± T" (the quantity
    within T of X), or ("inside", None) for "inside predicted" (quantity confirmed)."""
    text = str(claim["holds_if"])
    if re.fullmatch(r"\s*inside predicted\s*", text):
        return "inside", None
    m = re.fullmatch(r"\s*=\s*([-+0-9.eE]+)\s*(?:±|\+-|\+/-)\s*([0-9.eE]+)\s*", text)
    if m and finite(m.group(1)) and finite(m.group(2)):
        return "=", (float(m.group(1)), float(m.group(2)))
    m = re.fullmatch(r"\s*([<>])\s*([-+0-9.eE]+)\s*", text)
    if not m or not finite(m.group(2)):
        raise ReportError(f"{where or claim.get('id')}: holds_if {claim['holds_if']!r} is not '> X', '< X', "
                          "'= X ± T' or 'inside predicted' (the side of the threshold X that the claim says the "
                          "quantity is on).")
    return m.group(1), float(m.group(2))


def judge(e: Estimate, side: str, thr, predicted: Optional[tuple] = None) -> str:
    """holds | does not hold | inconclusive, from where the interval lies against the threshold (for
    "=": against the band X ± T; for "inside": against the predicted interval ``predicted``)."""
    if not e.has_interval:
        return "inconclusive"
    if e.lo == e.hi and e.n < 3:
        return "inconclusive"  # two seeds that differ alike (one test image, say): no spread to judge by
    if side in ("=", "inside"):
        lo, hi = (thr[0] - thr[1], thr[0] + thr[1]) if side == "=" else predicted
        if lo <= e.lo and e.hi <= hi:
            return "holds"
        return "does not hold" if (e.hi < lo or e.lo > hi) else "inconclusive"
    above, below = e.lo > thr, e.hi < thr
    if (side == ">" and above) or (side == "<" and below):
        return "holds"
    if (side == ">" and below) or (side == "<" and above):
        return "does not hold"
    return "inconclusive"


# --------------------------------------------------------------------------------- selecting runs
def select(claim: dict, dirs, cache: dict) -> list:
    """The runs a claim reads; NoRecords when its directory or its filter finds none (not run yet)."""
    spec = claim["runs"]
    spec = {"dir": spec} if isinstance(spec, str) else spec
    if not isinstance(spec, dict) or set(spec) - {"dir", "where"}:
        raise ReportError(f"claim {claim['id']!r}: runs is a sub-directory or a mapping with dir and/or where, "
                          f"not {claim['runs']!r}.")
    roots = [Path(d) for d in dirs]
    if spec.get("dir"):
        subs = [Path(x) for x in (spec["dir"] if isinstance(spec["dir"], list) else [spec["dir"]])]
        found = []
        for sub in subs:  # a list: the runs of several sub-directories together
            at = [sub] if sub.is_absolute() else [d / sub for d in roots if (d / sub).exists()]
            if not at or not at[0].exists():
                raise NoRecords(f"no directory {sub} below " + ", ".join(map(str, dirs)))
            found += at
        roots = found
    runs = []
    for root in roots:
        key = str(root.resolve())
        if key not in cache:
            try:
                cache[key] = find_runs([root])
            except ReportError:
                cache[key] = []
        runs += cache[key]
    for k, want in (spec.get("where") or {}).items():
        want = want if isinstance(want, list) else [want]
        runs = [r for r in runs if r.get(k) in want]
    if not runs:
        raise NoRecords(f"no run matches where {spec.get('where')} below " + ", ".join(map(str, roots)))
    return runs


def side_runs(runs, name: str, claim: dict) -> list:
    """The runs of one method label: an exact label (``cosine+on_load ×2``) or a method name."""
    out = [r for r in runs if r.label == name] or [r for r in runs if r.method == name]
    if not out:
        raise NoRecords(f"no run of {name!r} (methods there: " + ", ".join(sorted({r.label for r in runs})) + ")")
    ws = sorted({r.world_size for r in out})
    if len(ws) > 1:
        raise ReportError(f"claim {claim['id']!r}: {name!r} ran at world sizes {ws}; single-process and "
                          f"data-parallel runs are not compared together. Name one ('{name} ×{ws[-1]}') or "
                          "filter with where: {world_size: ...}.")
    return out


def _seeds(spec: dict, key: str) -> Optional[list]:
    v = spec.get(key)
    if v is None:
        return None
    v = [v] if isinstance(v, int) else v
    if not isinstance(v, list) or not v or not all(isinstance(x, int) for x in v):
        raise ReportError(f"{key} in the verdict spec is a list of seeds (e.g. [0, 1]), not {spec[key]!r}.")
    return sorted(v)


def _show(seeds) -> str:
    return ", ".join(map(str, seeds))


# ------------------------------------------------------------------------------------- measuring
def chosen(side: list, claim: dict, defaults: dict, metric: str, why: list) -> tuple:
    """(the runs that measure this side, its lr): at its best rate chosen on the tuning seeds and
    measured on the measuring seeds, at a rate the claim gives, or (lr: same) every run given. A
    reason the row cannot decide goes into ``why``."""
    lr = claim.get("lr", "best")
    if lr == "same":
        rates = sorted({r.lr for r in side})
        return side, rates[0] if len(rates) == 1 else math.nan
    if lr != "best":
        return [r for r in side if r.lr == float(lr)], float(lr)
    tune, meas = _seeds(defaults, "tuning_seeds"), _seeds(defaults, "measuring_seeds")
    label = side[0].label
    b = best_lr_at_equal_loads(side, metric, mode_of(metric), seeds=tune)
    if b is None:
        if tune is not None and not any(r.seed in tune for r in side):
            raise NoRecords(f"no run of {label} with a tuning seed ({_show(tune)})")
        raise _Missing(f"no eligible learning rate for {label} (a seed diverged or did not finish at every lr)")
    if len(b["grid"]) == 1:
        why.append(f"{label} ran at one rate ({b['lr']:g}): not tuned")
    elif b["edge"]:
        why.append(f"{label}'s best rate {b['lr']:g} is at the edge of its grid ({_show(f'{x:g}' for x in b['grid'])})")
    runs = [r for r in side if r.lr == b["lr"] and (meas is None or r.seed in meas)]
    if not runs:
        raise NoRecords(f"no run of {label} at its best rate {b['lr']:g} with a measuring seed ({_show(meas)})")
    return runs, b["lr"]


class _Missing(Exception):
    """A side without an eligible rate: an estimate without a value, the reason in its note."""


def measure(claim: dict, runs, defaults: dict) -> dict:
    """The claim's quantity on these runs: {estimate, method_lr, baseline_lr, why (reasons the row
    cannot decide), predicted (quantity confirmed)}."""
    if claim["quantity"] == "slope":
        return measure_slope(claim, runs, defaults)
    if claim["quantity"] == "confirmed":
        return measure_confirmed(claim, runs, defaults)
    base_name = claim.get("baseline", defaults.get("baseline", "sgd"))
    conf = float(defaults.get("confidence", CONFIDENCE))
    meth, base = side_runs(runs, claim["method"], claim), side_runs(runs, base_name, claim)
    _one_setting(claim, meth + base)
    metric = claim.get("metric") or defaults.get("metric") or default_metric(runs)
    why: list = []
    try:
        (meth, lr_m), (base, lr_b) = (chosen(s, claim, defaults, metric, why) for s in (meth, base))
    except _Missing as e:
        return {"estimate": none(0, len({r.seed for r in meth + base}), str(e)), "method_lr": None,
                "baseline_lr": None, "why": why}
    if not meth or not base:
        raise NoRecords(f"no runs at lr {claim.get('lr')}")
    _chance(base, metric, defaults, why)
    of, q = claim["of"], claim["quantity"]
    names = (base[0].label, meth[0].label)
    if q == "speedup":
        tgt = _target(claim, meth + base)
        lacking = unrecorded(of, (names[1], meth), (names[0], base))
        if lacking:
            e = none(0, len({r.seed for r in meth + base}), lacking)
        else:
            e = paired_ratio(to_target_by_seed(base, of, tgt), to_target_by_seed(meth, of, tgt), conf, *names)
    elif q == "ratio":
        # A perplexity is exp(mean per-example loss): its ratio comes from the per-example losses.
        e = (examples_difference(base, meth, of, conf, ratio=True, base_name=names[0], method_name=names[1])
             if of == "test_ppl" else None)
        e = e or paired_ratio(*(by_seed(s, lambda r: r.final(of)) for s in (base, meth)), conf, *names)
    elif claim.get("at"):
        at = claim["at"]
        x = min(last_x(r, at, of) for r in meth + base)
        if not finite(x):
            raise NoRecords(f"{at} or {of} not recorded")
        e = paired_difference(*(by_seed(s, lambda r: value_at(r, at, of, x)) for s in (base, meth)), conf, *names)
        e = Estimate(e.value, e.lo, e.hi, e.n, e.of, "; ".join(n for n in (e.note, f"at {at} = {x:.4g}") if n))
    else:  # an accuracy or a loss is the mean of the per-example values (right or not; the loss)
        e = (examples_difference(base, meth, of, conf, base_name=names[0], method_name=names[1])
             if of in ("test_acc", "test_loss") else None)
        e = e or paired_difference(final_by_seed(base, of), final_by_seed(meth, of), conf, *names)
    return {"estimate": e, "method_lr": lr_m, "baseline_lr": lr_b, "why": why}


def _one_setting(claim: dict, runs) -> None:
    combos = {(r.dataset, r.model, None if claim.get("across_budgets") else r.budget, r.world_size) for r in runs}
    if len(combos) > 1:
        mixed = "; ".join(" · ".join(map(str, c)) for c in sorted(combos, key=str))
        raise ReportError(f"claim {claim['id']!r} mixes runs of {mixed}"
                          + ". A comparison is within one data set, model, budget and world size: narrow runs: "
                          "where, or add the key that differs to when (across_budgets: true for a comparison "
                          "at different budgets on purpose, e.g. equal optimizer steps).")


def _target(claim: dict, runs) -> dict:
    t = claim.get("target")
    tgt = target_of(runs, *((t.get("value"), t.get("metric")) if isinstance(t, dict) else (t, None)))
    if tgt is None:
        raise ReportError(f"claim {claim['id']!r}: the runs have no target and the claim gives none (target:).")
    return tgt


def _chance(base, metric: str, defaults: dict, why: list) -> None:
    """A baseline at chance accuracy cannot tell methods apart: every method beats it."""
    if not metric.endswith("acc"):
        return
    classes = cfg_get(base[0].config, "model.num_classes") or CLASSES.get(base[0].dataset)
    if not classes:
        return
    chance, margin = 1 / classes, float(defaults.get("chance_margin", CHANCE_MARGIN))
    e = final_estimate(base, metric)
    top = e.hi if e.has_interval else e.value
    if finite(top) and top <= chance + margin:
        why.append(f"{base[0].label}'s {metric} {e.value:.3g} is within {margin:g} of chance ({chance:.3g})")


def _reuse_levels(runs) -> dict:
    return {r_: rs for (r_,), rs in group([r for r in runs if r.reuse is not None], "reuse").items()}


def measure_slope(claim: dict, runs, defaults: dict) -> dict:
    """The slope of log(``of`` to target) against log(1/p) over the reuse levels (SGD is 1/p = 1),
    each level at its own best rate (tuning seeds), one least-squares slope per measuring seed with
    a t interval over seeds. The Theorem's linear speed-up is a slope of -1."""
    conf = float(defaults.get("confidence", CONFIDENCE))
    levels = _reuse_levels(runs)
    if len(levels) < 2:
        raise NoRecords("fewer than two reuse levels (constant p or SGD)")
    metric = claim.get("metric") or defaults.get("metric") or default_metric(runs)
    _one_setting(claim, [r for rs in levels.values() for r in rs])
    tgt = _target(claim, runs)
    why: list = []
    per = {}
    for reuse, rs in levels.items():
        try:
            m, _ = chosen(rs, claim, defaults, metric, why)
        except _Missing as e:
            return {"estimate": none(0, 0, str(e)), "method_lr": None, "baseline_lr": None, "why": why}
        per[reuse] = to_target_by_seed(m, claim["of"], tgt)
    seeds = sorted(set.intersection(*(set(v) for v in per.values())))
    x = np.log(sorted(per))
    slopes, missed = {}, 0
    for s in seeds:
        y = [per[r][s] for r in sorted(per)]
        if any(v is None or v <= 0 for v in y):
            missed += 1
            slopes[s] = None
            continue
        slopes[s] = float(np.polyfit(x, np.log(y), 1)[0])
    e = (over_seeds(slopes, conf, missing="not reached at every level") if seeds
         else none(0, 0, "no seed at every level"))
    levels_text = ", ".join(f"{r:g}" for r in sorted(per))
    e = Estimate(e.value, e.lo, e.hi, e.n, e.of, "; ".join(n for n in (e.note, f"1/p = {levels_text}") if n))
    return {"estimate": e, "method_lr": math.nan, "baseline_lr": math.nan, "why": why}


def measure_confirmed(claim: dict, runs, defaults: dict) -> dict:
    """The advisor's measured speed-up with its interval (confirm.json beside the confirmation runs)
    against the interval it predicted from its pilot runs."""
    import json

    dirs = sorted({p for r in runs for p in r.dir.parents if (p / "confirm.json").exists()}, key=lambda p: len(p.parts))
    if not dirs:
        raise NoRecords("no confirm.json (echo-advise confirm) above these runs")
    res = json.loads((dirs[-1] / "confirm.json").read_text())
    m, p = res.get("measured") or {}, res.get("predicted") or {}
    if not finite(m.get("value")):
        raise NoRecords(f"{dirs[-1] / 'confirm.json'} holds no measured speed-up ({res.get('verdict')})")
    n = len(res.get("seeds") or [])
    e = Estimate(float(m["value"]), float(m.get("lo", math.nan)) if finite(m.get("lo")) else math.nan,
                 float(m.get("hi", math.nan)) if finite(m.get("hi")) else math.nan, n, n,
                 f"{res.get('level')} vs SGD at R = {res.get('R')}")
    pred = (float(p["lo"]), float(p["hi"])) if finite(p.get("lo")) and finite(p.get("hi")) else None
    why = [] if pred else ["the advisor predicted no interval"]
    return {"estimate": e, "method_lr": math.nan, "baseline_lr": math.nan, "why": why, "predicted": pred}


def _conditions(claim: dict, runs) -> list:
    """[(condition text, runs, claim)]: one per value of the ``when`` keys, per rate shared by both
    sides (lr: same) and per target (target: a list)."""
    when = claim.get("when") or []
    when = [when] if isinstance(when, str) else list(when)
    if claim.get("lr") == "same":
        when.append("lr")
    targets = claim.get("target") if isinstance(claim.get("target"), list) else [None]
    out = []
    for values, rs in (group(runs, *when).items() if when else [((), runs)]):
        cond = [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in zip(when, values)]
        for t in targets:
            c = claim if t is None else {**claim, "target": t}
            out.append((", ".join(cond + ([f"target={t:g}"] if t is not None else [])), rs, c))
    return out


def _row(c: dict, spec: dict, cond: str, m: dict) -> dict:
    side, thr = rule(c)
    e = m["estimate"]
    why = m.get("why") or []
    verdict = f"{NOT_INFORMATIVE} ({'; '.join(why)})" if why else judge(e, side, thr, m.get("predicted"))
    tuned = c.get("lr", "best") == "best" and c["quantity"] != "confirmed"  # a rate was chosen
    return {"id": c["id"], "claim": c["claim"], "figure": c["figure"], "condition": cond, "quantity": c["quantity"],
            "of": c["of"], "method": c["method"], "baseline": c.get("baseline", spec.get("baseline", "sgd")),
            "holds_if": c["holds_if"], "method_lr": m.get("method_lr"), "baseline_lr": m.get("baseline_lr"),
            "value": e.value, "lo": e.lo, "hi": e.hi, "n": e.n, "seeds": e.of, "note": e.note, "basis": e.basis,
            "tuning_seeds": _show(spec.get("tuning_seeds") or ["all"]) if tuned else "",
            "measuring_seeds": _show(spec.get("measuring_seeds") or ["all"]) if tuned else "all",
            "predicted": m.get("predicted"), "verdict": verdict, "estimate": e}


def evaluate(spec: dict, dirs) -> pd.DataFrame:
    """One row per (claim, condition): the estimate, its verdict, the learning rates used, the seeds
    that chose them and the seeds that measured the effect."""
    rows, cache = [], {}
    for c in spec["claims"]:
        try:
            runs = select(c, dirs, cache)
            parts = _conditions(c, runs)
        except NoRecords as e:
            rows.append(_row(c, spec, "", {"estimate": none(0, 0, str(e))}) | {"verdict": NO_RECORDS})
            continue
        for cond, rs, claim in parts:
            try:
                m = measure(claim, rs, spec)
            except NoRecords as e:
                if c.get("lr") == "same":
                    continue  # a rate only one side ran
                rows.append(_row(claim, spec, cond, {"estimate": none(0, 0, str(e))}) | {"verdict": NO_RECORDS})
                continue
            rows.append(_row(claim, spec, cond, m))
        if not any(r["id"] == c["id"] for r in rows):
            rows.append(_row(c, spec, "", {"estimate": none(0, 0, "no rate that both sides ran")})
                        | {"verdict": NO_RECORDS})
    return pd.DataFrame(rows)


def overall(conds: pd.DataFrame) -> str:
    """One verdict for a claim from its conditions' verdicts."""
    v = list(conds.verdict)
    if all(x == NO_RECORDS for x in v):
        return NO_RECORDS
    if all(x.startswith(NOT_INFORMATIVE) or x == NO_RECORDS for x in v):
        reasons = sorted({x[len(NOT_INFORMATIVE) + 2:-1] for x in v if x.startswith(NOT_INFORMATIVE)})
        return f"{NOT_INFORMATIVE} ({'; '.join(reasons)})"
    if all(x == "holds" for x in v):
        return "holds"
    if all(x == "does not hold" for x in v):
        return "does not hold"
    held = [c for c, x in zip(conds.condition, v) if x == "holds"]
    if held:
        return "holds only when " + "; ".join(held)
    failed = [c for c, x in zip(conds.condition, v) if x == "does not hold"]
    return "inconclusive" + (f" (does not hold when {'; '.join(failed)})" if failed else "")


def _effect(r) -> str:
    if r.verdict == NO_RECORDS:
        return (f"{r.condition}: " if r.condition else "") + f"no records ({r.note})"
    kind = {"difference": "difference", "slope": "difference"}.get(r.quantity, "ratio")
    text = fmt(r.estimate, "#.3g", kind).replace(f"(n={r.n}", f"(n={r.n} seeds", 1)
    if r.estimate.has_interval:
        text += f", interval over {r.basis}"
    if r.predicted is not None and isinstance(r.predicted, tuple):
        text += f"; predicted [{r.predicted[0]:.3g}, {r.predicted[1]:.3g}]"
    if finite(r.method_lr) and finite(r.baseline_lr):
        text += f", lr {r.method_lr:g} vs {r.baseline_lr:g}"
    if r.tuning_seeds == "all":
        text += " (rates chosen and the effect measured on the same seeds)"
    elif r.tuning_seeds:
        text += f" (rates chosen on seeds {r.tuning_seeds}, effect measured on seeds {r.measuring_seeds})"
    return (f"{r.condition}: " if r.condition else "") + text


def verdict_markdown(df: pd.DataFrame, confidence: float = CONFIDENCE) -> str:
    what = {"speedup": "{baseline} ÷ {method} of {of} to target",
            "ratio": "{baseline} ÷ {method} of final {of}", "difference": "{method} − {baseline} of final {of}",
            "slope": "slope of log({of} to target) against log(1/p)",
            "confirmed": "the advisor's measured speed-up in {of} against its predicted interval"}
    rows = []
    for cid, d in df.groupby("id", sort=False):
        r0 = d.iloc[0]
        esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731 - a '|' would end the cell
        rows.append({
            "claim": esc(f"**{cid}** {r0.claim}"),
            "figure": f"[{Path(str(r0.figure)).name}]({r0.figure})",
            f"measured effect ({confidence:.0%} interval, n seeds)": esc(
                what[r0.quantity].format(**r0) + f" (claimed {r0.holds_if}): "
                + "<br>".join(_effect(r) for r in d.itertuples())),
            "verdict": overall(d)})
    return markdown(pd.DataFrame(rows))


def write_verdict(spec_path, dirs, out: Path) -> tuple:
    """OUT.md (the table) and OUT.csv (a row per claim and condition); returns (paths, markdown,
    [(claim id, figure)] for figures that do not exist)."""
    spec = load_spec(spec_path)
    df = evaluate(spec, dirs)
    md = verdict_markdown(df, float(spec.get("confidence", CONFIDENCE)))
    out.parent.mkdir(parents=True, exist_ok=True)
    from .plots import ext

    df.drop(columns="estimate").assign(claim_verdict=df.id.map({i: overall(d) for i, d in df.groupby("id")})) \
        .to_csv(ext(out, ".csv"), index=False)
    ext(out, ".md").write_text(md + "\n")
    missing = [(c["id"], c["figure"]) for c in spec["claims"] if not Path(str(c["figure"])).exists()]
    return [ext(out, ".md"), ext(out, ".csv")], md, missing
