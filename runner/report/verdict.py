"""``echo-report verdict SPEC.yaml DIR...``: the verdict table, generated from a spec of claims.

Each claim names the runs that test it, one quantity measured on them over seeds (a paired
comparison of a method with a baseline, seeds matched by seed) and the side of a threshold that the
claim says the quantity is on. The verdict comes from the 95 % interval of the quantity:

- **holds** when the interval lies entirely on the claimed side of the threshold;
- **does not hold** when it lies entirely on the other side;
- **inconclusive** otherwise: the interval straddles the threshold, or there is none (one seed; a
  seed that missed the target, which is never averaged away: ``not reached by k of n seeds``);
- with ``when`` (conditions), the quantity and a verdict per value of the condition keys, and the
  claim **holds** (every condition), **does not hold** (every condition), **holds only when
  hardware.ratio=4, 8** (some), or is **inconclusive** (none held; those where it does not hold are named).

The spec (YAML)::

    baseline: sgd            # optional: the default comparator of every claim (default sgd)
    metric: test_acc         # optional: the metric that picks each method's best lr (default: by task)
    confidence: 0.95         # optional
    claims:
      - id: C1
        claim: Cosine echoing reaches the target in fewer example loads than SGD
        figure: results/figures/methods.png
        runs: methods                   # a sub-directory of each DIR, or a filter:
                                        #   {dir: methods, where: {KEY: VALUE or [VALUES]}} (dir optional)
        quantity: speedup               # speedup | ratio | difference (below)
        of: example_loads               # the counter or metric the quantity is of
        method: cosine                  # a method label: summary.json's method, "cosine+on_load ×2" for a world size
        baseline: sgd                   # optional: overrides the spec's baseline
        holds_if: "> 1"                 # "> X" or "< X": the claimed side of the threshold X
        target: 0.9                     # optional (speedup): a target value instead of the runs' own
        lr: best                        # optional: best (default: each side at its own best lr) or a number
        when: hardware.ratio            # optional: a key or a list of keys: a verdict per value

Quantities (each a paired comparison matched by seed, with a t interval over the seeds):

- ``speedup``: baseline ÷ method of ``of`` (``example_loads``, ``step``, ``epoch``, ``wall_s``, ``sim_s``,
  ``comm_rounds``, ``comm_bytes``) at the first record that reached the target; geometric mean over
  seeds, interval from the log ratios. > 1: the method needs less. ``of: comm_rounds`` is the ratio of
  communication rounds at equal accuracy.
- ``ratio``: baseline ÷ method of the final value of ``of`` (e.g. ``comm_rounds`` at the end of the budget).
- ``difference``: method − baseline of the final value of ``of`` (e.g. ``test_acc``).

Keys in ``where`` and ``when`` are dotted config keys (``hardware.ratio``, ``optim.lr``, ``schedule.p``)
or a run's labels (``method``, ``world_size``, ``seed``). Each side's best learning rate is the one with
the best mean ``metric`` at equal example loads (``stats.best_lr_at_equal_loads``). Runs of more than
one data set, model, budget or world size in one comparison are refused: narrow ``where`` or add the
key to ``when``.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import yaml

from .runs import ReportError, default_metric, finite, find_runs, group, mode_of, target_of
from .stats import (CONFIDENCE, Estimate, best_lr_at_equal_loads, by_seed, final_by_seed, none,
                    paired_difference, paired_ratio, to_target_by_seed)
from .tables import fmt, markdown, unrecorded

QUANTITIES = ("speedup", "ratio", "difference")
CLAIM_KEYS = {"id", "claim", "figure", "runs", "quantity", "of", "method", "baseline", "holds_if", "target", "lr",
              "when", "metric"}
TOP_KEYS = {"baseline", "metric", "confidence", "claims"}


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
    return spec


def _unknown(keys: set, where: str, allowed: set) -> None:
    if keys:
        raise ReportError(f"{where} has unknown key(s) {', '.join(sorted(map(str, keys)))}; the keys are "
                          f"{', '.join(sorted(allowed))}.")


def rule(claim: dict, where: str = "") -> tuple:
    """("<" or ">", threshold) from ``holds_if``."""
    m = re.fullmatch(r"\s*([<>])\s*([-+0-9.eE]+)\s*", str(claim["holds_if"]))
    if not m or not finite(m.group(2)):
        raise ReportError(f"{where or claim.get('id')}: holds_if {claim['holds_if']!r} is not '> X' or '< X' "
                          "(the side of the threshold X that the claim says the quantity is on).")
    return m.group(1), float(m.group(2))


def judge(e: Estimate, side: str, thr: float) -> str:
    """holds | does not hold | inconclusive, from where the interval lies against the threshold."""
    if not e.has_interval:
        return "inconclusive"
    if e.lo == e.hi and e.n < 3:
        return "inconclusive"  # two seeds that differ alike (one test image, say): no spread to judge by
    above, below = e.lo > thr, e.hi < thr
    if (side == ">" and above) or (side == "<" and below):
        return "holds"
    if (side == ">" and below) or (side == "<" and above):
        return "does not hold"
    return "inconclusive"


# --------------------------------------------------------------------------------- selecting runs
def select(claim: dict, dirs, cache: dict) -> list:
    spec = claim["runs"]
    spec = {"dir": spec} if isinstance(spec, str) else spec
    if not isinstance(spec, dict) or set(spec) - {"dir", "where"}:
        raise ReportError(f"claim {claim['id']!r}: runs is a sub-directory or a mapping with dir and/or where, "
                          f"not {claim['runs']!r}.")
    roots = [Path(d) for d in dirs]
    if spec.get("dir"):
        sub = Path(spec["dir"])
        roots = [sub] if sub.is_absolute() else [d / sub for d in roots if (d / sub).exists()]
        if not roots or not roots[0].exists():
            raise ReportError(f"claim {claim['id']!r}: no directory {spec['dir']} below "
                              + ", ".join(map(str, dirs)) + ". Run its experiment first, or fix runs: in the spec.")
    runs = []
    for root in roots:
        key = str(root.resolve())
        if key not in cache:
            cache[key] = find_runs([root])
        runs += cache[key]
    for k, want in (spec.get("where") or {}).items():
        want = want if isinstance(want, list) else [want]
        runs = [r for r in runs if r.get(k) in want]
    if not runs:
        raise ReportError(f"claim {claim['id']!r}: no run matches where {spec.get('where')} below "
                          + ", ".join(map(str, roots)) + ".")
    return runs


def side_runs(runs, name: str, claim: dict) -> list:
    """The runs of one method label: an exact label (``cosine+on_load ×2``) or a method name."""
    out = [r for r in runs if r.label == name] or [r for r in runs if r.method == name]
    if not out:
        raise ReportError(f"claim {claim['id']!r}: no run of {name!r} among the selected runs (methods there: "
                          + ", ".join(sorted({r.label for r in runs})) + ").")
    ws = sorted({r.world_size for r in out})
    if len(ws) > 1:
        raise ReportError(f"claim {claim['id']!r}: {name!r} ran at world sizes {ws}; single-process and "
                          f"data-parallel runs are not compared together. Name one ('{name} ×{ws[-1]}') or "
                          "filter with where: {world_size: ...}.")
    return out


# ------------------------------------------------------------------------------------- measuring
def measure(claim: dict, runs, defaults: dict) -> tuple:
    """(Estimate, method lr, baseline lr) of the claim's quantity on these runs."""
    base_name = claim.get("baseline", defaults.get("baseline", "sgd"))
    conf = float(defaults.get("confidence", CONFIDENCE))
    meth, base = side_runs(runs, claim["method"], claim), side_runs(runs, base_name, claim)
    combos = {(r.dataset, r.model, r.budget, r.world_size) for r in meth + base}
    if len(combos) > 1:
        mixed = "; ".join(" · ".join(map(str, c)) for c in sorted(combos))
        raise ReportError(f"claim {claim['id']!r} mixes runs of {mixed}"
                          + ". A comparison is within one data set, model, budget and world size: narrow runs: "
                          "where, or add the key that differs to when.")
    metric = claim.get("metric") or defaults.get("metric") or default_metric(runs)
    lrs = []
    for side in (meth, base):
        if claim.get("lr", "best") == "best":
            b = best_lr_at_equal_loads(side, metric, mode_of(metric))
            if b is None:
                return none(0, len({r.seed for r in side}), f"no eligible learning rate for {side[0].label} "
                            "(a seed diverged or did not finish at every lr)"), None, None
            lrs.append(b["lr"])
        else:
            lrs.append(float(claim["lr"]))
    meth = [r for r in meth if r.lr == lrs[0]]
    base = [r for r in base if r.lr == lrs[1]]
    if not meth or not base:
        return none(0, 0, f"no runs at lr {claim['lr']}"), lrs[0], lrs[1]
    of, q = claim["of"], claim["quantity"]
    names = (base[0].label, meth[0].label)
    if q == "speedup":
        t = claim.get("target")
        tgt = target_of(meth + base, *((t.get("value"), t.get("metric")) if isinstance(t, dict) else (t, None)))
        if tgt is None:
            raise ReportError(f"claim {claim['id']!r}: the runs have no target and the claim gives none (target:).")
        lacking = unrecorded(of, (names[1], meth), (names[0], base))
        if lacking:
            return none(0, len({r.seed for r in meth + base}), lacking), lrs[0], lrs[1]
        e = paired_ratio(to_target_by_seed(base, of, tgt), to_target_by_seed(meth, of, tgt), conf, *names)
    elif q == "ratio":
        e = paired_ratio(*(by_seed(s, lambda r: r.final(of)) for s in (base, meth)), conf, *names)
    else:
        e = paired_difference(final_by_seed(base, of), final_by_seed(meth, of), conf, *names)
    return e, lrs[0], lrs[1]


def evaluate(spec: dict, dirs) -> pd.DataFrame:
    """One row per (claim, condition): the estimate, its verdict and the learning rates used."""
    rows, cache = [], {}
    for c in spec["claims"]:
        side, thr = rule(c)
        runs = select(c, dirs, cache)
        when = c.get("when") or []
        when = [when] if isinstance(when, str) else list(when)
        parts = group(runs, *when).items() if when else [((), runs)]
        for values, rs in parts:
            cond = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in zip(when, values))
            e, lr_m, lr_b = measure(c, rs, spec)
            rows.append({"id": c["id"], "claim": c["claim"], "figure": c["figure"], "condition": cond,
                         "quantity": c["quantity"], "of": c["of"], "method": c["method"],
                         "baseline": c.get("baseline", spec.get("baseline", "sgd")), "holds_if": c["holds_if"],
                         "method_lr": lr_m, "baseline_lr": lr_b, "value": e.value, "lo": e.lo, "hi": e.hi,
                         "n": e.n, "seeds": e.of, "note": e.note, "verdict": judge(e, side, thr),
                         "estimate": e})
    return pd.DataFrame(rows)


def overall(conds: pd.DataFrame) -> str:
    """One verdict for a claim from its conditions' verdicts."""
    v = list(conds.verdict)
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
    kind = "difference" if r.quantity == "difference" else "ratio"
    text = fmt(r.estimate, "#.3g", kind).replace(f"(n={r.n}", f"(n={r.n} seeds", 1)
    if finite(r.method_lr) and finite(r.baseline_lr):
        text += f", lr {r.method_lr:g} vs {r.baseline_lr:g}"
    return (f"{r.condition}: " if r.condition else "") + text


def verdict_markdown(df: pd.DataFrame, confidence: float = CONFIDENCE) -> str:
    what = {"speedup": "{baseline} ÷ {method} of {of} to target",
            "ratio": "{baseline} ÷ {method} of final {of}", "difference": "{method} − {baseline} of final {of}"}
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
