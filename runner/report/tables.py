"""Tables (pandas: one row per run, then groupby/agg; written with to_markdown and to_csv).

- ``runs_frame``: what was found, one row per run.
- ``lr_table`` / ``write_best_lr``: the final metric per (method, world size, lr), the best lr.
- ``method_table``: the Markdown beside the curves (final metric and clocks to target, mean ± sd).
- ``stats_frame`` / ``write_stats``: intervals over seeds and the paired comparison with a baseline.
- ``clock_frame`` / ``write_clock_check``: simulated against measured training time.
- ``dp_frame`` / ``dp_markdown``: the data-parallel communication table.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import pandas as pd

from ..schema import target_text
from .plots import BAND, ext
from .runs import CLOCKS, ReportError, finite, group, mode_of, target_of, to_target
from .stats import (CONFIDENCE, Estimate, best_lr_at_equal_loads, bootstrap_interval, examples_difference,
                    final_by_seed, final_estimate, none, paired_difference, paired_ratio, recorded,
                    to_target_by_seed, to_target_estimate)

KEYS = ["dataset", "model", "budget", "world_size", "method", "label", "lr"]


def markdown(df: pd.DataFrame) -> str:
    # Cells are text already; numparse off keeps '0.050' and '2 (1 diverged)' as written.
    return df.to_markdown(index=False, disable_numparse=True)


def runs_frame(runs, metric: str) -> pd.DataFrame:
    rows = []
    for r in runs:
        last = r.records[-1] if r.records else {}
        rows.append({"dataset": r.dataset, "model": r.model, "method": r.label, "lr": r.lr, "seed": r.seed,
                     "status": r.status, "loads": last.get("example_loads"), "steps": last.get("step"),
                     metric: r.final(metric), "dir": str(r.dir)})
    return pd.DataFrame(rows).sort_values(["dataset", "method", "lr", "seed"], kind="stable")


# ------------------------------------------------------------------------------ best learning rate
def _per_run(runs, metric: str) -> pd.DataFrame:
    return pd.DataFrame([{
        "dataset": r.dataset, "model": r.model, "budget": r.budget, "world_size": r.world_size, "method": r.method,
        "label": r.label, "lr": r.lr, "seed": r.seed, "status": r.status,
        "final": r.final(metric) if r.status == "complete" else math.nan,
        "loads": r.records[-1].get("example_loads") if r.records else math.nan} for r in runs])


def lr_table(runs, metric: str) -> list:
    """One row (a dict) per (data set, model, budget, world size, method, lr): the final metric over
    the seeds that completed. A diverged or unfinished seed makes its learning rate ineligible; the
    best is the best mean among the rest."""
    df = _per_run(runs, metric)
    agg = df.groupby(KEYS, sort=True).agg(
        seeds=("seed", "size"), diverged=("status", lambda s: int((s == "diverged").sum())),
        incomplete=("status", lambda s: int((~s.isin(["complete", "diverged"])).sum())),
        done=("final", "count"), mean=("final", "mean"), std=("final", "std"), min=("final", "min"),
        max=("final", "max"), example_loads=("loads", "mean")).reset_index()
    agg.loc[agg["done"] == 1, "std"] = 0.0  # one seed: no spread (NaN would read as missing)
    agg["example_loads"] = agg["example_loads"].round().astype("Int64")
    agg["metric"] = metric
    agg["eligible"] = (agg.diverged == 0) & (agg.incomplete == 0) & agg["mean"].notna()
    agg["best"] = False
    ok = agg[agg.eligible]
    if len(ok):  # the first (smallest) lr wins a tie
        score = ok["mean"] if mode_of(metric) == "max" else -ok["mean"]
        agg.loc[score.groupby([ok[k] for k in KEYS[:-1]]).idxmax().values, "best"] = True
    return agg.drop(columns="done").to_dict("records")


def _cell(r: dict) -> str:
    if r["diverged"]:
        return f"diverged ({r['diverged']}/{r['seeds']} seeds)"
    if r["incomplete"]:
        return f"incomplete ({r['incomplete']}/{r['seeds']} seeds)"
    return f"{r['mean']:.4g} ± {r['std']:.2g} [{r['min']:.4g}, {r['max']:.4g}]"


def write_best_lr(rows, out: Path) -> list:
    """OUT.csv (every cell, a ``best`` column) and OUT.md (the best per method, then the full
    method × lr grid with the best in bold)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(rows)
    df[["dataset", "model", "budget", "world_size", "method", "label", "lr", "metric", "seeds", "diverged",
        "incomplete", "mean", "std", "min", "max", "example_loads", "best"]].to_csv(ext(out, ".csv"), index=False)
    metric = rows[0]["metric"]
    lines = ["# Best learning rate per method", "",
             f"By the mean final `{metric}` over seeds ({'higher' if mode_of(metric) == 'max' else 'lower'} is "
             "better), all runs of a table at the same budget; `mean ± std [min, max]` over seeds. A learning "
             "rate with a diverged seed is not eligible. `×M`: data-parallel over M processes.", ""]
    df["cell"] = [_cell(r) for r in rows]
    for (dataset, model, budget), d in df.groupby(["dataset", "model", "budget"], sort=True):
        best = []
        for label, g in d.groupby("label", sort=True):
            b = g[g.best]
            best.append({"method": label,
                         "best lr": f"{b.lr.iloc[0]:g}" if len(b) else "none (every lr diverged or is incomplete)",
                         f"final {metric}": b.cell.iloc[0] if len(b) else "—", "seeds": str(g.seeds.iloc[0]),
                         "example loads": str((b if len(b) else g).example_loads.iloc[0])})
        grid = d.assign(cell=[f"**{c.split(' [')[0]}**" if b else c.split(" [")[0] for c, b in zip(d.cell, d.best)])
        grid = grid.pivot(index="label", columns="lr", values="cell").fillna("")
        grid.columns = [f"lr {lr:g}" for lr in grid.columns]
        lines += [f"## {dataset} · {model} · {budget}", "", markdown(pd.DataFrame(best)), "",
                  "Every learning rate (best in bold):", "",
                  markdown(grid.rename_axis("method").reset_index()), ""]
    ext(out, ".md").write_text("\n".join(lines))
    return [ext(out, ".md"), ext(out, ".csv")]


# ------------------------------------------------------------------------- table beside the curves
def method_table(runs, metric: str) -> str:
    """Markdown: per (data set, model, budget, lr), per method and world size, the final metric and
    each clock to the runs' target, mean ± sd over seeds ('—' where a seed missed the target, 'n/a'
    for a clock the runs do not keep)."""
    parts = []
    for (dataset, model, budget, lr), rs in group(runs, "dataset", "model", "budget", "lr").items():
        t = rs[0].config.get("target", {})
        if t.get("value") is None:
            continue
        op = "≥" if t.get("mode", "max") == "max" else "≤"
        rows = []
        for (label,), mr in group(rs, "label").items():
            per = pd.DataFrame([{"final": r.final(metric), "diverged": r.status == "diverged",
                                 **{k: (h or {}).get(k, math.nan) if h is not None else math.nan for k in CLOCKS},
                                 "hit": h is not None}
                                for r in mr for h in [to_target(r, t["metric"], t["value"], t.get("mode", "max"))]])
            per[list(CLOCKS)] = per[list(CLOCKS)].apply(pd.to_numeric, errors="coerce")

            def cell(k):
                if per.hit.all() and per[k].isna().all():
                    return "n/a"  # a clock these runs do not keep (sim_s without a hardware profile)
                f = ".2f" if k.endswith("_s") else ".0f"
                v = per[k].dropna()
                return f"{v.mean():{f}} ± {v.std(ddof=0):{f}}" if len(v) == len(per) else "—"

            div = int(per.diverged.sum())
            fin = per.final.dropna()
            rows.append({"method": label, "seeds": f"{len(mr)}" + (f" ({div} diverged)" if div else ""),
                         f"final {metric}": (f"{fin.mean():.4f} ± {fin.std(ddof=0):.4f}" if div < len(mr)
                                             else "diverged"),
                         f"to {t['metric']} {op} {t['value']:g}: example loads": cell("example_loads"),
                         "steps": cell("step"), "sim_s": cell("sim_s"), "wall_s": cell("wall_s")})
        parts += [f"### {dataset} · {model} · lr {lr:g} · {budget}", "", markdown(pd.DataFrame(rows)), ""]
    return "\n".join(parts)


# ---------------------------------------------------------------------------------- statistics
def fmt(e: Estimate, spec: str = ".4g", kind: str = "mean") -> str:
    """'0.947 [0.93, 0.96] (n=3)'; a ratio '1.52× [...]'; a difference '+0.012 [...]'; the note
    where there is no value or no interval."""
    if not e.has_value:
        return e.note or "—"
    sign = "+" if kind == "difference" else ""
    unit = "×" if kind == "ratio" else ""
    v = f"{e.value:{sign}{spec}}{unit}"
    if not e.has_interval:
        return f"{v} (n={e.n}, no interval)"
    note = f"; {e.note}" if e.note and e.note != "no spread over seeds" else ""
    return f"{v} [{e.lo:{sign}{spec}}, {e.hi:{sign}{spec}}] (n={e.n}{note})"


def flat(prefix: str, e: Estimate) -> dict:
    """An estimate as CSV columns."""
    return {prefix: e.value, f"{prefix}_lo": e.lo, f"{prefix}_hi": e.hi, f"{prefix}_n": e.n,
            f"{prefix}_note": e.note}


_FMT = {"example_loads": ".0f", "step": ".0f", "wall_s": ".3g", "sim_s": ".3g"}


def stats_frame(runs, metric: str, baselines=("sgd",), target: Optional[float] = None,
                confidence: float = CONFIDENCE, tuning=None, measuring=None) -> tuple:
    """(DataFrame of numbers, DataFrame of Markdown cells), one row per (data set, model, budget,
    world size, method, lr): the final metric with a t and a bootstrap (BCa) interval, each clock to
    the target with a t interval, whether it is the method's best lr at equal example loads, and on
    the best lr's row the paired comparison with the first of ``baselines`` that ran at the same
    data set, model, budget and world size (at its own best lr), matched by seed. With ``tuning`` and
    ``measuring`` seeds, the best lr is chosen on the first and the comparison made on the second
    (columns ``chosen on seeds``, ``measured on seeds``); the difference of the final metric resamples
    seeds and test examples where the runs keep per-example results (column ``interval basis``)."""
    num, txt = [], []
    for (dataset, model, budget, ws), rs in group(runs, "dataset", "model", "budget", "world_size").items():
        tgt = target_of(rs, target)
        by_method = {m: mr for (m,), mr in group(rs, "method").items()}
        best = {m: best_lr_at_equal_loads(mr, metric, mode_of(metric), seeds=tuning) for m, mr in by_method.items()}
        base = next((b for b in baselines if b in by_method and best[b] is not None), None)
        for m, mr in by_method.items():
            for (lr,), seeds in group(mr, "lr").items():
                row = {"dataset": dataset, "model": model, "budget": budget, "world_size": ws, "method": m,
                       "label": seeds[0].label, "lr": lr, "seeds": len(seeds),
                       "diverged": sum(r.status == "diverged" for r in seeds), "metric": metric,
                       "confidence": confidence, "baseline": base,
                       "target": target_text(tgt) if tgt else None}
                cells = {"method": row["label"], "lr": f"{lr:g}", "seeds": str(len(seeds))}
                _over_seeds(seeds, metric, tgt, confidence, row, cells)
                row["best_lr"] = best[m] is not None and best[m]["lr"] == lr
                row["equal_loads"] = best[m]["loads"] if best[m] and best[m]["loads"] is not None else math.nan
                row["score_at_equal_loads"] = best[m]["scores"].get(lr, math.nan) if best[m] else math.nan
                cells["best lr"] = (f"yes ({metric} {row['score_at_equal_loads']:.4g} at {row['equal_loads']:g} "
                                    "loads)" if row["best_lr"] else "")
                if row["best_lr"] and base is not None:
                    b_runs = _only([r for r in by_method[base] if r.lr == best[base]["lr"]], measuring)
                    row["baseline_lr"] = best[base]["lr"]
                    row["chosen_on_seeds"] = ", ".join(map(str, best[m]["seeds"]))
                    row["measured_on_seeds"] = ", ".join(map(str, sorted({r.seed for r in _only(seeds, measuring)})))
                    cells["vs baseline"] = f"{base} at lr {best[base]['lr']:g}"
                    cells["chosen on seeds"] = row["chosen_on_seeds"]
                    cells["measured on seeds"] = row["measured_on_seeds"] or "none"
                    _paired(_only(seeds, measuring), b_runs, m, base, metric, tgt, confidence, row, cells)
                num.append(row)
                txt.append({**{k: row[k] for k in ("dataset", "model", "budget", "world_size", "best_lr", "baseline",
                                                   "target")}, "_method": m, **cells})
    return pd.DataFrame(num), pd.DataFrame(txt)


def _only(runs, seeds) -> list:
    """The runs of these seeds (all of them when ``seeds`` is None)."""
    return list(runs) if seeds is None else [r for r in runs if r.seed in seeds]


def _over_seeds(seeds, metric: str, tgt, confidence: float, row: dict, cells: dict) -> None:
    """The final metric (t and bootstrap intervals) and each clock to target (t interval)."""
    fin = final_estimate(seeds, metric, confidence)
    vals = [v for v in final_by_seed(seeds, metric).values() if v is not None]
    boot = bootstrap_interval(vals, confidence) if fin.has_value else none(fin.n, fin.of, fin.note)
    row.update({**flat("final", fin), **flat("final_boot", boot)})
    cells.update({f"final {metric}": fmt(fin), "bootstrap (BCa)": fmt(boot)})
    for k in CLOCKS:
        e = to_target_estimate(seeds, k, tgt, confidence)
        row.update(flat(f"{k}_to_target", e))
        cells[f"{k} to target"] = "n/a" if e.note == f"{k} not recorded" else fmt(e, _FMT[k])


def _paired(seeds, b_runs, m: str, base: str, metric: str, tgt, confidence: float, row: dict, cells: dict) -> None:
    """Baseline / method of each clock to target, and method - baseline of the final metric."""
    for k in CLOCKS:
        lacking = unrecorded(k, (base, b_runs), (m, seeds))
        if tgt is None or lacking:
            e = none(0, len(seeds), "no target" if tgt is None else lacking)
        else:
            e = paired_ratio(to_target_by_seed(b_runs, k, tgt), to_target_by_seed(seeds, k, tgt), confidence, base, m)
        row.update(flat(f"speedup_{k}", e))
        cells[f"speed-up: {k}"] = "n/a" if e.note == f"{k} not recorded" else fmt(e, "#.3g", "ratio")
    if not seeds or not b_runs:
        e = none(0, 0, "no run of the measuring seeds")
    else:
        # An accuracy or a loss is a mean of per-example values; a perplexity's difference is not (seeds only).
        e = (examples_difference(b_runs, seeds, metric, confidence, base_name=base, method_name=m)
             if metric in ("test_acc", "test_loss") else None)
        e = e or paired_difference(final_by_seed(b_runs, metric), final_by_seed(seeds, metric), confidence, base, m)
    row.update(flat("diff_final", e))
    row["diff_final_basis"] = e.basis
    cells[f"Δ final {metric}"] = fmt(e, ".3g", "difference")
    cells["interval basis"] = e.basis


def unrecorded(field: str, *sides) -> str:
    """'' when every side ((name, runs), ...) records ``field``; else a note saying which do not."""
    lacking = [name for name, rs in sides if not recorded(rs, field)]
    if not lacking:
        return ""
    return f"{field} not recorded" if len(lacking) == len(sides) else f"{field} not recorded by {', '.join(lacking)}"


def write_stats(runs, out: Path, metric: str, baselines=("sgd",), target: Optional[float] = None,
                confidence: float = CONFIDENCE, tuning=None, measuring=None) -> list:
    num, txt = stats_frame(runs, metric, baselines, target, confidence, tuning, measuring)
    out.parent.mkdir(parents=True, exist_ok=True)
    num.to_csv(ext(out, ".csv"), index=False)
    pct = f"{confidence:.0%}"
    lines = ["# Statistics over seeds", "",
             f"Mean over seeds with its {pct} t interval (`value [lo, hi] (n=seeds)`; one seed has no interval); "
             f"the final metric also with a {pct} bootstrap interval (BCa, 9999 resamples, seeded). A time to "
             "target missed by a seed has no mean: `not reached by k of n seeds`. Each method's best learning "
             "rate is the one with the best mean metric at equal example loads (interpolated at the largest "
             "count every run of the method reached). `×M`: data-parallel over M processes.", ""]
    hidden = ("dataset", "model", "budget", "world_size", "best_lr", "baseline", "target", "_method")
    cols = [c for c in txt.columns if c not in hidden]
    paired = (["method", "lr", "vs baseline", "chosen on seeds", "measured on seeds"]
              + [c for c in cols if c.startswith(("speed-up", "Δ"))] + ["interval basis"])
    first = [c for c in cols if c not in paired[2:]]
    for (dataset, model, budget, ws), d in txt.groupby(["dataset", "model", "budget", "world_size"], sort=True):
        procs = "1 process" if ws == 1 else f"{ws} processes (data parallel)"
        t = d.target.iloc[0]
        target_text = t if isinstance(t, str) else "none (the runs have no target.value: give --target)"
        lines += [f"## {dataset} · {model} · {budget} · {procs}", "", f"Target: {target_text}.", "",
                  markdown(d[first]), ""]
        base = d.baseline.iloc[0]
        if not isinstance(base, str):
            lines += ["No baseline method (" + ", ".join(baselines) + ") with an eligible learning rate ran here: "
                      "no paired comparison.", ""]
            continue
        b = d[d.best_lr & (d._method != base)][[c for c in paired if c in d.columns]].fillna("")
        lines += [f"Paired with {base} at its own best lr, matched by seed; each best lr chosen on the seeds in "
                  "`chosen on seeds`, the comparison made on those in `measured on seeds`. Speed-up: "
                  f"{base} / method of the clock to target (> 1: the method needs less), geometric mean with a "
                  f"{pct} t interval over seeds on the log ratios; Δ: method − {base} of the final {metric}, "
                  f"its {pct} interval from a bootstrap over seeds and test examples where the runs keep "
                  "per-example results, else a t interval over seeds (`interval basis` says which).", "",
                  markdown(b), ""]
    ext(out, ".md").write_text("\n".join(lines))
    return [ext(out, ".md"), ext(out, ".csv")]


# ------------------------------------------------------------------------------- the clock check
def clock_frame(runs) -> tuple:
    """(DataFrame of every record with both clocks after the first, skipped runs): predicted
    (sim_s) and measured (wall_s) training time and the relative error (sim_s - wall_s) / wall_s;
    ``end`` marks each run's last record."""
    rows, skipped = [], []
    for r in runs:
        recs = [x for x in r.records if finite(x.get("sim_s")) and finite(x.get("wall_s")) and float(x["wall_s"]) > 0]
        if not recs:
            skipped.append(r)
            continue
        for i, x in enumerate(recs):
            rows.append({"dir": str(r.dir), "dataset": r.dataset, "model": r.model, "hardware": r.hardware,
                         "method": r.method, "label": r.label, "world_size": r.world_size, "lr": r.lr,
                         "seed": r.seed, "step": x.get("step"), "example_loads": x.get("example_loads"),
                         "wall_s": float(x["wall_s"]), "sim_s": float(x["sim_s"]), "end": i == len(recs) - 1})
    if not rows:
        raise ReportError("none of these runs records both sim_s and wall_s, so there is nothing to check: sim_s "
                          "needs a hardware profile. Measure this machine with `echo-advise measure` and train with "
                          "hardware=measured (or any hardware profile), then point clock-check at those runs.")
    df = pd.DataFrame(rows)
    df["rel_err"] = (df.sim_s - df.wall_s) / df.wall_s
    return df, skipped


def write_clock_check(df: pd.DataFrame, skipped, out: Path) -> list:
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(ext(out, ".csv"), index=False)
    ends = df[df.end].sort_values(["hardware", "label", "lr", "seed"], kind="stable")
    at_end = pd.DataFrame({"run": ends.dir, "hardware": ends.hardware, "method": ends.label,
                           "lr": ends.lr.map("{:g}".format), "seed": ends.seed.astype(str),
                           "wall_s": ends.wall_s.map("{:.3g}".format), "sim_s": ends.sim_s.map("{:.3g}".format),
                           "rel. error": ends.rel_err.map("{:+.1%}".format)})
    within = lambda s: f"{(s.abs() <= BAND).mean():.0%}"  # noqa: E731
    summary = df.groupby("hardware", sort=True).agg(
        runs=("dir", "nunique"), records=("rel_err", "size"),
        median=("rel_err", lambda s: f"{s.median():+.1%}"), median_abs=("rel_err", lambda s: f"{s.abs().median():.1%}"),
        within=("rel_err", within)).reset_index().astype(str)
    summary.columns = ["hardware", "runs", "records", "median rel. error", "median abs. rel. error",
                       f"within ±{BAND:.0%}"]
    lines = ["# Simulated against measured training time", "",
             "`sim_s`: the simulated clock's prediction from the run's hardware profile; `wall_s`: the measured "
             "training time (evaluation excluded). Relative error = (sim_s − wall_s) / wall_s.", "",
             "## At the end of each run", "", markdown(at_end), "", "## Over every record", "", markdown(summary), ""]
    if skipped:
        lines += [f"Skipped {len(skipped)} run(s) without sim_s (no hardware profile): "
                  + ", ".join(str(r.dir) for r in skipped), ""]
    ext(out, ".md").write_text("\n".join(lines))
    return [ext(out, ".md"), ext(out, ".csv")]


# ----------------------------------------------------------------------- the data-parallel table
def comm_s(run) -> float:
    """Communication time if none of it overlapped: rounds x latency + bytes / bandwidth. The clock
    charges latency per collective call and overlaps DDP's calls with the backward pass, so the part
    of sim_s it charged can differ from this."""
    h, last = run.config.get("hardware", {}), run.records[-1]
    bw = h.get("comm_bandwidth_Bps")
    latency = last.get("comm_rounds", 0) * (h.get("comm_latency_s") or 0.0)
    return latency + (last.get("comm_bytes", 0) / bw if bw else 0.0)


def dp_frame(runs, metric: str = "test_acc") -> pd.DataFrame:
    """One row per (data set, model, budget, lr, method and world size) of the complete runs: the
    mean over seeds of the final record (example loads over all ranks, steps, comm rounds and MB per
    rank, the metric with its min-max, sim_s and its communication part) and the example loads and
    sim_s at the first record at the runs' target (NaN unless every seed reached it)."""
    per = []
    for r in runs:
        if r.status != "complete" or not r.records:
            continue
        last, t = r.records[-1], r.config.get("target") or {}
        hit = (to_target(r, t.get("metric", metric), t["value"], t.get("mode", "max"))
               if t.get("value") is not None else None)
        per.append({"dataset": r.dataset, "model": r.model, "budget": r.budget, "lr": r.lr, "method": r.label,
                    "ranks": r.world_size, "example_loads": last["example_loads"], "steps": last["step"],
                    "rounds": last.get("comm_rounds", 0), "mb": last.get("comm_bytes", 0) / 1e6,
                    "metric": r.final(metric), "sim_s": last.get("sim_s"), "comm_s": comm_s(r),
                    "target_loads": (hit or {}).get("example_loads"), "target_sim_s": (hit or {}).get("sim_s"),
                    "target": f"{t.get('metric')} >= {t.get('value')}" if t else "-"})
    if not per:
        raise ReportError("no complete runs to tabulate: the data-parallel table reads finished runs "
                          "(summary.json status complete) below the directories given.")
    df = pd.DataFrame(per)
    for c in ("sim_s", "target_loads", "target_sim_s"):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    keys = ["dataset", "model", "budget", "lr", "method"]
    all_or_nan = lambda s: s.mean() if s.notna().all() else math.nan  # noqa: E731 - a seed that missed: no mean
    out = df.groupby(keys, sort=True).agg(
        ranks=("ranks", "first"), seeds=("ranks", "size"), example_loads=("example_loads", "mean"),
        steps=("steps", "mean"), rounds=("rounds", "mean"), mb=("mb", "mean"), metric=("metric", "mean"),
        metric_lo=("metric", "min"), metric_hi=("metric", "max"), sim_s=("sim_s", "mean"), comm_s=("comm_s", "mean"),
        target_loads=("target_loads", all_or_nan), target_sim_s=("target_sim_s", all_or_nan),
        target=("target", "first")).reset_index()
    out.attrs["metric"] = metric
    return out


def dp_markdown(df: pd.DataFrame) -> str:
    metric = df.attrs.get("metric", "test_acc")
    f = lambda spec: (lambda v: "-" if not finite(v) else format(v, spec))  # noqa: E731
    parts = []
    for (dataset, model, budget, lr), d in df.groupby(["dataset", "model", "budget", "lr"], sort=True):
        t = pd.DataFrame({
            "method": d.method, "ranks": d.ranks.astype(str), "seeds": d.seeds.astype(str),
            "example loads": d.example_loads.map(f(".0f")), "steps/rank": d.steps.map(f(".0f")),
            "comm rounds": d.rounds.map(f(".0f")), "MB sent/rank": d.mb.map(f(".1f")),
            f"{metric} (min-max)": [f"{m:.4f} ({lo:.4f}-{hi:.4f})"
                                    for m, lo, hi in zip(d.metric, d.metric_lo, d.metric_hi)],
            "sim_s": d.sim_s.map(f(".2f")), "comm s (no overlap)": d.comm_s.map(f(".3f")),
            "loads to target": d.target_loads.map(f(".0f")), "sim_s to target": d.target_sim_s.map(f(".2f"))})
        parts += [f"### {dataset} · {model} · lr {lr:g} · {budget}", "", markdown(t), "",
                  f"Target: {d.target.iloc[0]}; means over seeds (a column is '-' when a seed missed it).", ""]
    return "\n".join(parts)
