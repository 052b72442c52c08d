"""Figures with every method at its own best learning rate, picked by the rule the verdict table
uses (``runner.report.stats.best_lr_at_equal_loads``: the best mean over seeds of the metric at the
largest example-load count that every run of the method reached). Reads run directories, never trains.

    python scripts/at_best_lr.py curves  DIR... --out STEM [--x example_loads step epoch wall_s sim_s]
    python scripts/at_best_lr.py speedup DIR... --out STEM

- ``curves``: one figure per (data set, model, budget), one panel per x axis, one line per method
  (and world size) at its best rate: mean over seeds with a min-max band.
- ``speedup``: Algorithm 1 with constant p (and SGD, 1/p = 1), each reuse level at its own best
  rate: example loads, gradient steps, simulated and wall-clock time to the runs' target against
  1/p, mean with a 95 % t interval over seeds, beside the ideal (loads / (1/p), steps unchanged),
  and the paired speed-up in loads over SGD (seeds matched) against the ideal y = 1/p.

With ``--tuning-seeds`` and ``--measuring-seeds`` (the Makefile passes both), each rate is chosen
on the tuning seeds and the figure shows the measuring seeds at that rate, so that the luck that
picked a rate does not also measure it; the table's columns ``chosen on seeds`` and ``measured on
seeds`` say which. Both write STEM.md (the rate each method got, the grid it came from, ``edge`` when
the best is the smallest or largest rate tried: widen the grid) and STEM.csv beside the figures.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from runner.report import plots, pyplot, title
from runner.report.runs import ReportError, default_metric, find_runs, group, mode_of, target_of
from runner.report.stats import (best_lr_at_equal_loads, paired_ratio, recorded, to_target_by_seed,
                                 to_target_estimate)
from runner.report.stats import Estimate, none, t_interval
from runner.report.tables import markdown


CLOCKS = ("example_loads", "step", "sim_s", "wall_s")


def pick(runs, metric: str, key: str = "label", tuning=None, measuring=None) -> dict:
    """{label: (best lr, [its runs], row for the table)} per method (or reuse level): the rate chosen
    on the ``tuning`` seeds (all seeds when None), the runs at that rate of the ``measuring`` seeds."""
    out = {}
    for (k,), rs in group(runs, key).items():
        b = best_lr_at_equal_loads(rs, metric, mode_of(metric), seeds=tuning)
        grid = sorted({r.lr for r in rs})
        row = {"method": rs[0].label if key != "label" else k, "grid": ", ".join(f"{x:g}" for x in grid),
               "seeds": len({r.seed for r in rs}),
               "chosen on seeds": _seed_text(tuning, rs), "measured on seeds": _seed_text(measuring, rs)}
        if b is None:
            row.update({"best lr": "none eligible (a seed diverged or did not finish at every rate)"})
            out[k] = (None, [], row)
            continue
        edge = b["edge"]
        measured = [r for r in rs if r.lr == b["lr"] and (measuring is None or r.seed in measuring)]
        if not measured:
            row.update({"best lr": f"{b['lr']:g}, no run of the measuring seeds there"})
            out[k] = (None, [], row)
            continue
        # Runs that stop at the target are ranked by their mean loads to it (a miss counts as infinite).
        score = ("mean example loads to target" if b["loads"] is None
                 else f"mean {metric} at {b['loads']:g} loads (equal loads)")
        row.update({"best lr": f"{b['lr']:g}" + (" (edge of the grid)" if edge else ""),
                    "ranked by": score, "best score": f"{b['scores'][b['lr']]:.4g}",
                    "every rate": "; ".join(f"{lr:g}: {s:.4g}" for lr, s in sorted(b["scores"].items()))})
        if edge:
            print(f"at_best_lr: warning: {row['method']}'s best rate {b['lr']:g} is at the edge of its grid "
                  f"({row['grid']}): a wider grid may find a better one", file=sys.stderr)
        out[k] = (b["lr"], measured, row)
    return out


def log_estimate(runs, k: str, tgt: dict):
    """The geometric mean over seeds of ``k`` to target with a t interval on the log scale (the
    figure's log axis; on the raw scale, two or three seeds give intervals below zero)."""
    e = to_target_estimate(runs, k, tgt)
    if not e.has_value:
        return e
    vals = [v for v in to_target_by_seed(runs, k, tgt).values()]
    if min(vals) <= 0:
        return none(e.n, e.of, "the target was met at the first record (a time of 0)")
    t = t_interval(np.log(vals))
    back = (lambda v: math.exp(v) if math.isfinite(v) else math.nan)  # noqa: E731
    return Estimate(back(t.value), back(t.lo), back(t.hi), t.n, t.of, t.note)


def _seed_text(seeds, runs) -> str:
    return ", ".join(map(str, sorted(seeds if seeds is not None else {r.seed for r in runs})))


def seed_list(text: str) -> list:
    """'0,1' -> [0, 1] (the Makefile's seed lists)."""
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of seeds, e.g. 0,1") from None


def curves(runs, xs, metric: str, out: Path, ylim, tuning=None, measuring=None, question=None) -> tuple:
    figs, rows = [], []
    combos = group(runs, "dataset", "model", "budget")
    for (dataset, model, budget), rs in combos.items():
        chosen = pick(rs, metric, tuning=tuning, measuring=measuring)
        by_label = {k: v[1] for k, v in chosen.items() if v[0] is not None}
        labels = {k: f"{k}, lr {v[0]:g}" for k, v in chosen.items() if v[0] is not None}
        rows += [{"dataset": dataset, "model": model, "budget": budget, **v[2]} for v in chosen.values()]
        axes_x = [x for x in xs if plots.available([r for v in by_label.values() for r in v], x)]
        if not by_label or not axes_x:
            continue
        plt = pyplot()
        cols = min(len(axes_x), 2)
        nrows = -(-len(axes_x) // cols)
        fig, axes = plt.subplots(nrows, cols, figsize=(5.2 * cols + 0.4, 4.0 * nrows + 0.4), squeeze=False)
        for ax, x in zip(axes.flat, axes_x):
            plots.plot_methods(ax, by_label, x, metric, labels, ylim)
        for ax in list(axes.flat)[len(axes_x):]:
            ax.set_visible(False)
        seeds = f"measuring seeds {_seed_text(measuring, rs)}" + (f", rates chosen on {_seed_text(tuning, rs)}"
                                                                    if tuning is not None else "")
        fig.suptitle(title(question or dataset, model if not question else f"{dataset} · {model}",
                           "per method, its best (legend)", f"mean over {seeds}"))
        fig.tight_layout()
        plots.legend_below(fig, axes[0][0])
        figs.append((fig, out if len(combos) == 1 else out.with_name(f"{out.name}-{dataset}-{model}")))
    if not figs:
        raise ReportError(f"no method with an eligible learning rate records {metric} against {', '.join(xs)} "
                          f"below the given directories.")
    return figs, pd.DataFrame(rows)


def speedup(runs, metric: str, out: Path, tuning=None, measuring=None, target=None) -> tuple:
    runs = [r for r in runs if r.reuse is not None]
    if len({r.reuse for r in runs}) < 2 or 1.0 not in {r.reuse for r in runs}:
        raise ReportError("the speed-up figure needs SGD (schedule=none or constant p=1) and at least one "
                          "constant p (schedule=constant schedule.p=...) at one data set, model and budget.")
    combos = group(runs, "dataset", "model", "budget")
    if len(combos) > 1:
        raise ReportError("the speed-up figure takes runs of one data set, model and budget; these have "
                          + "; ".join(" · ".join(map(str, k)) for k in combos) + ".")
    tgt = target_of(runs, target)
    if tgt is None:
        raise ReportError("the runs have no target (target.value): the speed-up figure reads time to target.")
    chosen = pick(runs, metric, key="reuse", tuning=tuning, measuring=measuring)
    base = chosen[1.0][1]
    pts, rows = [], []
    for reuse, (lr, rs, row) in chosen.items():
        p = {"reuse": reuse, "method": row["method"], "lr": lr, "seeds": row["seeds"]}
        for k in CLOCKS:
            e = log_estimate(rs, k, tgt) if rs else None
            ok = e is not None and e.has_value
            vals = list(to_target_by_seed(rs, k, tgt).values()) if ok else []
            p.update({k: e.value if ok else math.nan, f"{k}_lo": e.lo if ok else math.nan,
                      f"{k}_hi": e.hi if ok else math.nan, f"{k}_min": min(vals) if vals else math.nan,
                      f"{k}_max": max(vals) if vals else math.nan,
                      f"{k}_note": e.note if e is not None else "no eligible lr"})
        b_loads = to_target_by_seed(base, "example_loads", tgt) if base else {}
        m_loads = to_target_by_seed(rs, "example_loads", tgt) if rs else {}
        s = paired_ratio(b_loads, m_loads, base_name="sgd", method_name=row["method"]) if rs and base else None
        ratios = [b_loads[k] / m_loads[k] for k in set(b_loads) & set(m_loads) if b_loads[k] and m_loads[k]]
        whole = s is not None and s.has_value
        p.update({"speedup": s.value if s else math.nan, "speedup_lo": s.lo if s else math.nan,
                  "speedup_hi": s.hi if s else math.nan, "speedup_min": min(ratios) if whole else math.nan,
                  "speedup_max": max(ratios) if whole else math.nan, "speedup_note": s.note if s else ""})
        pts.append(p)
        rows.append(row)
    df = pd.DataFrame(pts)
    keys = [k for k in CLOCKS if recorded(runs, k)]
    plt = pyplot()
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter, NullLocator

    n = len(keys) + 1
    cols = min(n, 3)
    nrows = -(-n // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.6 * cols + 0.6, 3.9 * nrows + 0.9), squeeze=False)
    r = df.reuse.to_numpy(float)
    hw = runs[0].config.get("hardware", {})
    c = plots.colour("constant(p=0.5)")
    # plots.ideal wants the means with example_loads/step/sim_s; a level whose seeds missed is NaN.
    ideal_pts = [{"reuse": q["reuse"], **{k: q[k] for k in ("example_loads", "step", "sim_s")}} for q in pts]
    ideal_what = {"example_loads": "ideal: loads / (1/p)", "step": "ideal: SGD's steps",
                  "sim_s": f"ideal: max(loading, steps) on the {hw.get('name')} profile", "speedup": "ideal: y = 1/p"}
    for ax, k in zip(axes.flat, keys + ["speedup"]):
        # The bars: a t interval over the measuring seeds on the log scale (for the speed-up: the verdict's,
        # on the log ratios paired by seed); a level without one (one seed) has no bar.
        y = df[k].to_numpy(float)
        lo, hi = df[f"{k}_lo"].to_numpy(float), df[f"{k}_hi"].to_numpy(float)
        ok = np.isfinite(y)
        err = np.nan_to_num(np.clip(np.vstack([y - lo, hi - y]), 0, None))
        ax.errorbar(r[ok], y[ok], yerr=err[:, ok], fmt="o-", color=c, capsize=3)
        hi = np.where(np.isfinite(hi), hi, y)
        lo = np.where(np.isfinite(lo), lo, y)
        if (~ok).any():
            top = np.nanmax(hi) * 1.3 if np.isfinite(hi).any() else 1.0
            ax.plot(r[~ok], np.full((~ok).sum(), top), "x", color="#d62728", ms=9)
        if k == "speedup":
            ideal_y = r
            ax.set_ylabel("speed-up in loads vs SGD")
            ax.set_yscale("log", base=2)
            span = np.concatenate([r, hi[np.isfinite(hi)], lo[np.isfinite(lo) & (lo > 0)]])
            ticks = [2.0 ** e for e in range(int(np.floor(np.log2(span.min()))), int(np.ceil(np.log2(span.max()))) + 1)]
            ax.yaxis.set_major_locator(FixedLocator(ticks))
        else:
            ideal_y = plots.ideal(ideal_pts, k, hw, runs[0].config["data"]["batch_size"]) if k != "wall_s" else None
            ax.set_ylabel(plots.XS[k].replace(" (s)", "") + " to target" + (" (s)" if k.endswith("_s") else ""))
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        if ideal_y is not None:
            ax.plot(r, ideal_y, "--", color="#000000", lw=1.2)
            ax.set_title(ideal_what[k], fontsize=10)
        ax.set_xscale("log", base=2)
        ax.set_xticks(r, [f"{x:g}" for x in r])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("expected reuses per fresh batch (1/p)")
        ax.grid(alpha=0.3, which="both")
        plots.fit_ylim(ax)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    seeds = f"measuring seeds {_seed_text(measuring, runs)}"
    (dataset, model, budget), = combos
    lrs = ", ".join(f"{q['reuse']:g}: {q['lr']:g}" for q in pts if q["lr"] is not None)
    fig.suptitle(title(dataset, model, f"best per level (1/p: lr) {lrs}",
                       f"target {tgt['metric']} {'≥' if tgt['mode'] == 'max' else '≤'} {tgt['value']:g}"))
    fig.tight_layout()
    fig.legend(handles=[Line2D([], [], color=c, marker="o",
                               label=f"each level at its best lr: geometric mean over {seeds}, bars: 95% t interval "
                                     "on the log scale (for the speed-up: the verdict's, paired by seed)"),
                        Line2D([], [], color="#000000", ls="--", label="ideal (every echo step worth a fresh one)"),
                        Line2D([], [], color="#d62728", marker="x", ls="", label="target not reached by every seed")],
               loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=1, frameon=False, fontsize=10)
    return [(fig, out)], pd.DataFrame(rows), df


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("what", choices=["curves", "speedup"])
    ap.add_argument("dirs", nargs="+")
    ap.add_argument("--out", required=True, help="output path without extension")
    ap.add_argument("--x", nargs="+", default=["example_loads", "step", "epoch", "wall_s", "sim_s"],
                    choices=list(plots.XS))
    ap.add_argument("--metric", help="test_acc | test_ppl | ... (default: by task)")
    ap.add_argument("--ylim", nargs=2, type=float, help="a wished y range, widened to hold every plotted value")
    ap.add_argument("--tuning-seeds", type=seed_list, metavar="S,S",
                    help="choose each rate on these seeds (default: all)")
    ap.add_argument("--measuring-seeds", type=seed_list, metavar="S,S",
                    help="show and measure these seeds at the chosen rate (default: all)")
    ap.add_argument("--target", type=float, help="speedup: time to this value of the metric (default: the runs' "
                    "target; each rate is still chosen by the runs' own target)")
    ap.add_argument("--question", help="curves: the figure's question, first in its title (e.g. 'Early "
                    "training: ...')")
    a = ap.parse_args(argv)
    pick_seeds = {"tuning": a.tuning_seeds, "measuring": a.measuring_seeds}
    try:
        runs = find_runs(a.dirs)
        metric = a.metric or default_metric(runs)
        out = Path(a.out)
        if a.what == "curves":
            figs, table = curves(runs, a.x, metric, out, a.ylim, question=a.question, **pick_seeds)
            points = None
        else:
            figs, table, points = speedup(runs, metric, out, target=a.target, **pick_seeds)
    except ReportError as e:
        print(f"at_best_lr: error: {e}", file=sys.stderr)
        return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    md = ["Each method at its own best learning rate: the best mean over the tuning seeds (column `chosen on "
          "seeds`; the figure and the intervals show the `measured on seeds` at that rate) of "
          f"`{metric}` at the largest example-load count every run of the method reached, or, for runs "
          "that stop at the target, the least mean example loads to it (`runner.report.stats."
          "best_lr_at_equal_loads`, the verdict table's rule; column `ranked by`).", "", markdown(table.astype(str))]
    if points is not None:
        cols = (["reuse", "method", "lr", "seeds"]
                + [c for k in CLOCKS + ("speedup",) for c in (k, f"{k}_lo", f"{k}_hi")])
        md += ["", "Per level (geometric mean and 95% t interval on the log scale over the measuring seeds, the "
               "figure's bars; speed-up paired with SGD by seed):", "",
               markdown(points[cols].map(lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)))]
        points.to_csv(plots.ext(out, ".csv"), index=False)
    else:
        table.to_csv(plots.ext(out, ".csv"), index=False)
    plots.ext(out, ".md").write_text("\n".join(md) + "\n")
    written = [plots.ext(out, ".md"), plots.ext(out, ".csv")]
    for fig, stem in figs:
        written += plots.save(fig, stem)
    print("\n".join(md))
    for w in written:
        print(f"at_best_lr: wrote {w}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
