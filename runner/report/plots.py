"""Figures (matplotlib, saved unscaled as PNG and PDF): every text at least 10 pt at the saved
size, one colour per method in every figure (a data-parallel group keeps its method's colour and is
drawn dashed), titles naming data set, model and learning rate in at most two lines, legends outside
the axes (never over the data), and y-limits that hold every plotted value (a given ``ylim`` is
widened to the data, so a run that collapsed shows)."""
from __future__ import annotations

import math
import textwrap
import zlib
from pathlib import Path
from typing import Optional

import numpy as np

from .runs import ReportError, finite, group, target_of
from .stats import claim_points, mean_band

XS = {"example_loads": "example loads", "step": "gradient steps", "epoch": "epochs",
      "wall_s": "wall-clock training time (s)", "sim_s": "simulated time (s)",
      "comm_rounds": "communication rounds", "comm_bytes": "collective payload (bytes)"}
YS = {"test_acc": "test accuracy", "test_ppl": "test perplexity", "test_loss": "test loss",
      "train_loss": "training loss"}
# One colour per method in every figure. Methods not listed get a colour from their name's hash,
# which is stable across figures and runs too.
COLOURS = {
    "sgd": "#000000", "cosine": "#1f77b4", "linear": "#2ca02c", "step": "#d62728",
    "constant(p=0.5)": "#ff7f0e", "constant(p=0.25)": "#8c564b", "constant(p=0.125)": "#e377c2",
    "constant(p=0.0625)": "#bcbd22", "batch(e=2.0)": "#9467bd", "example(e=2.0)": "#17becf",
    "adaptive": "#7f7f7f",
    # data parallel (comm strategies)
    "sgd+allreduce": "#393b79", "sgd+grad_accum": "#bd9e39", "sgd+periodic": "#637939",
    "constant(p=0.5)+on_load": "#e6550d", "constant(p=0.5)+probabilistic": "#7b4173",
    "cosine+on_load": "#843c39", "cosine+probabilistic": "#ce6dbd",
}
_SPARE = ["#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d",
          "#9edae5", "#6b6ecf", "#b5cf6b", "#e7ba52", "#d6616b", "#a55194"]
FONT_PT = 11  # every text in a figure is at least 10 pt at the saved size (figures are never scaled)
BAND = 0.15   # the clock check's tolerance band: sim_s within ±15 % of wall_s


def colour(method: str) -> str:
    return COLOURS.get(method) or _SPARE[zlib.crc32(method.encode()) % len(_SPARE)]


def linestyle(world_size: int) -> str:
    """Single-process runs solid, data-parallel ones dashed (their label says ×M too)."""
    return "-" if world_size == 1 else "--"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": FONT_PT, "axes.titlesize": FONT_PT, "axes.labelsize": FONT_PT,
                         "legend.fontsize": 10, "xtick.labelsize": 10, "ytick.labelsize": 10,
                         "figure.titlesize": 12, "pdf.fonttype": 42, "svg.fonttype": "none"})
    return plt


def save(fig, out: Path) -> list:
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = [ext(out, ".png"), ext(out, ".pdf")]
    fig.savefig(paths[0], dpi=110, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight", metadata={"CreationDate": None})  # same runs, same bytes
    import matplotlib.pyplot as plt

    plt.close(fig)
    return paths


def ext(stem: Path, suffix: str) -> Path:
    # Not with_suffix: a stem like "curves-lr0.05" has no suffix to replace.
    return stem.with_name(stem.name + suffix)


TITLE_WIDTH = 100  # characters per title line; a title has at most two lines


def _title(dataset: str, model: str, lr: str, extra: str = "") -> str:
    """Two lines at most: data set and model, then the rate and the rest (shortened with '…'; the
    per-method rates are in the legend)."""
    first = textwrap.shorten(f"{dataset} · {model}", TITLE_WIDTH, placeholder=" …")
    second = textwrap.shorten(f"lr {lr}" + (f" · {extra}" if extra else ""), TITLE_WIDTH, placeholder=" …")
    return f"{first}\n{second}"


def legend_below(fig, axes, **kw):
    """The legend of ``axes`` (their labelled artists, each label once) below the figure, outside
    every axes, so that it never covers data; call after tight_layout (bbox_inches="tight" keeps it)."""
    handles, labels = [], []
    for ax in np.atleast_1d(axes).flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if not handles:
        return None
    ncol = kw.pop("ncol", min(len(handles), 2))
    return fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=ncol, frameon=False,
                      **kw)


def fit_ylim(ax, ylim=None) -> None:
    """y-limits that hold every plotted value: ``ylim`` (a wished range) widened to the data with a
    small margin, so that a collapsed or diverging run is never cut off."""
    ys = [np.asarray(line.get_ydata(), float) for line in ax.get_lines()]
    ys += [np.asarray(c.get_paths()[0].vertices[:, 1], float) for c in ax.collections if c.get_paths()]
    ys = np.concatenate([y[np.isfinite(y)] for y in ys]) if ys else np.array([])
    if ax.get_yscale() == "log":
        ys = ys[ys > 0]
    if not len(ys):
        if ylim:
            ax.set_ylim(*ylim)
        return
    lo, hi = float(ys.min()), float(ys.max())
    if ax.get_yscale() == "log":
        lo, hi = lo / 1.05, hi * 1.05
    else:
        pad = 0.03 * (hi - lo) or 0.01 * (abs(hi) or 1.0)
        lo, hi = lo - pad, hi + pad
    if ylim:
        lo, hi = min(lo, ylim[0]), max(hi, ylim[1])
    ax.set_ylim(lo, hi)


def plot_methods(ax, by_label: dict, x: str, y: str, labels: Optional[dict] = None, ylim=None) -> None:
    """One line per group label (mean over its seeds) with a min-max band; diverged seeds are left
    out of the mean and counted in the legend. Against example loads, epochs are on the top axis.
    The y-limits hold every line and band (``ylim`` is widened to them)."""
    banded = False
    for key, runs in by_label.items():
        ok = [r for r in runs if r.status != "diverged"]
        c, ls = colour(runs[0].method), linestyle(runs[0].world_size)
        label = (labels or {}).get(key, key)
        if len(runs) > 1:
            label += f" ({len(ok)} seeds)" if len(ok) == len(runs) else f" ({len(runs) - len(ok)}/{len(runs)} diverged)"
        elif len(ok) < len(runs):
            label += " (diverged)"
        mb = mean_band(ok, x, y)
        if mb is None:
            ax.plot([], [], color=c, label=label, ls=":")
            continue
        g, m, lo, hi = mb
        ax.plot(g, m, color=c, ls=ls, label=label, lw=1.8)
        if len(ok) > 1:
            ax.fill_between(g, lo, hi, color=c, alpha=0.18, lw=0)
            banded = True
    if banded:  # the legend says what a band is: the spread of the seeds, not an interval
        ax.fill_between([], [], [], color="#888888", alpha=0.3, lw=0, label="band: min to max over the seeds")
    ax.set_xlabel(XS.get(x, x))
    ax.set_ylabel(YS.get(y, y))
    if y == "test_ppl":
        ax.set_yscale("log")
    fit_ylim(ax, ylim)
    ax.grid(alpha=0.3)
    per_epoch = _loads_per_epoch([r for rs in by_label.values() for r in rs])
    if x == "example_loads" and per_epoch:
        top = ax.secondary_xaxis("top", functions=(lambda v: v / per_epoch, lambda e: e * per_epoch))
        top.set_xlabel(XS["epoch"])


def _loads_per_epoch(runs) -> Optional[float]:
    for run in runs:
        for r in run.records:
            if finite(r.get("epoch")) and r["epoch"] > 0:
                return r["example_loads"] / r["epoch"]
    return None


def available(runs, x: str) -> bool:
    return any(finite(r.get(x)) for run in runs for r in run.records[1:])


def curves_figs(runs, xs, y: str, out: Path, ylim=None) -> list:
    """[(figure, path stem)]: one per (data set, model, budget, lr), a panel per x axis, a line per
    method and world size."""
    figs = []
    combos = group(runs, "dataset", "model", "budget", "lr")
    for (dataset, model, _, lr), rs in combos.items():
        axes_x = [x for x in xs if available(rs, x)]
        if not axes_x or not available(rs, y):
            continue
        plt = _plt()
        cols = min(len(axes_x), 2)  # two columns keep the figure printable at its saved size
        rows = -(-len(axes_x) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols + 0.4, 4.0 * rows + 0.4), squeeze=False)
        by_label = {m: v for (m,), v in group(rs, "label").items()}
        for ax, x in zip(axes.flat, axes_x):
            plot_methods(ax, by_label, x, y, ylim=ylim)
        for ax in list(axes.flat)[len(axes_x):]:
            ax.set_visible(False)
        fig.suptitle(_title(dataset, model, f"{lr:g}", "mean over seeds, band: min to max"))
        fig.tight_layout()
        legend_below(fig, axes[0][0])
        figs.append((fig, out if len(combos) == 1 else out.with_name(f"{out.name}-{dataset}-{model}-lr{lr:g}")))
    if not figs:
        raise ReportError(f"none of the runs has records with {y!r} against {', '.join(xs)}: check the "
                          "metric (test_acc for classification, test_ppl for language) and the x axes.")
    return figs


def best_figs(runs, rows, x: str, y: str, out: Path, ylim=None) -> list:
    """[(figure, path stem)]: each method (and world size) at its own best learning rate, one figure
    per (data set, model, budget); ``rows`` from ``tables.lr_table``."""
    figs = []
    best = {(r["dataset"], r["model"], r["budget"], r["label"]): r["lr"] for r in rows if r["best"]}
    combos = group(runs, "dataset", "model", "budget")
    for (dataset, model, budget), rs in combos.items():
        by_label, labels = {}, {}
        for (m,), mr in group(rs, "label").items():
            lr = best.get((dataset, model, budget, m))
            if lr is not None:
                by_label[m] = [r for r in mr if r.lr == lr]
                labels[m] = f"{m}, lr {lr:g}"
        if not by_label:
            continue
        plt = _plt()
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        plot_methods(ax, by_label, x, y, labels, ylim=ylim)
        fig.suptitle(_title(dataset, model, "per method, its best (legend)", "mean over seeds, band: min to max"))
        fig.tight_layout()
        legend_below(fig, ax)
        figs.append((fig, out if len(combos) == 1 else out.with_name(f"{out.name}-{dataset}-{model}")))
    return figs


# ------------------------------------------------------------------------------------ the claim
def ideal(points, k: str, hw: dict, batch: int) -> Optional[np.ndarray]:
    """What perfect echoing would give if every echo step were worth a fresh one: SGD's steps to
    target stay the same and its loads divide by the reuse; simulated time is then the larger of
    loading those batches and computing those steps (the pipeline and the accelerator overlap), so
    the ideal speed-up in time stops at the loading-to-step time ratio."""
    base = next((p for p in points if p["reuse"] == 1.0 and math.isfinite(p["example_loads"])), None)
    if base is None:
        return None
    r = np.array([p["reuse"] for p in points])
    if k == "example_loads":
        return base["example_loads"] / r
    if k == "step":
        return np.full_like(r, base["step"])
    if k == "sim_s" and hw.get("name", "none") != "none" and math.isfinite(base["sim_s"]):
        from omegaconf import OmegaConf

        from ..simclock import batch_load_s

        per_batch = batch_load_s(OmegaConf.create(hw), batch)
        return np.maximum(base["example_loads"] / batch / r * per_batch, base["step"] * hw["step_s"])
    return None


def claim_figs(runs, metric: str, value: Optional[float], out: Path) -> list:
    """[(figure, path stem)]: loads, steps and sim_s to target against 1/p, one per (data set,
    model, budget, lr) with at least two reuse levels; each also gets a CSV of its points."""
    import pandas as pd

    todo = []
    for (dataset, model, budget, lr), rs in group(runs, "dataset", "model", "budget", "lr").items():
        rs = [r for r in rs if r.reuse is not None]
        if len({r.reuse for r in rs}) < 2:
            continue
        t = target_of(rs, value, metric if value is not None else None)
        if t is None:
            raise ReportError("the runs have no target (target.value) and none was given: pass --target.")
        pts = claim_points(rs, t["metric"], t["value"], t["mode"])
        if any(p["reached"] for p in pts):  # a learning rate that never gets there has nothing to show
            todo.append(((dataset, model, budget, lr), rs, t, pts))
    figs = []
    for (dataset, model, budget, lr), rs, t, pts in todo:
        keys = [k for k in ("example_loads", "step", "sim_s") if available(rs, k)]
        plt = _plt()
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator

        fig, axes = plt.subplots(1, len(keys), figsize=(4.6 * len(keys) + 0.6, 4.2), squeeze=False)
        r = np.array([p["reuse"] for p in pts])
        hw = rs[0].config.get("hardware", {})
        for ax, k in zip(axes[0], keys):
            y = np.array([p[k] for p in pts])
            sd = np.array([p[k + "_sd"] for p in pts])
            ok = np.isfinite(y)
            ax.errorbar(r[ok], y[ok], yerr=sd[ok], fmt="o-", color=colour("constant(p=0.5)"), capsize=3,
                        label="measured (mean over seeds, ±1 sd)")
            if (~ok).any():
                top = np.nanmax(y) if ok.any() else 1.0
                ax.plot(r[~ok], np.full((~ok).sum(), top * 1.15), "x", color="#d62728", ms=9,
                        label="target not reached by every seed")
            ideal_y = ideal(pts, k, hw, rs[0].config["data"]["batch_size"])
            if ideal_y is not None:
                what = {"example_loads": "ideal: linear speed-up", "step": "ideal: echo step = fresh step",
                        "sim_s": f"ideal on {hw.get('name')} profile"}[k]
                ax.plot(r, ideal_y, "--", color="#000000", lw=1.2, label=what)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xticks(r, [f"{x:g}" for x in r])
            ax.xaxis.set_minor_locator(NullLocator())
            # Plain numbers at 1, 2 and 5 times powers of ten: a narrow log range still gets labels.
            ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.yaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel("expected reuses per fresh batch (1/p)")
            ax.set_ylabel(XS[k].replace(" (s)", "") + " to target" + (" (s)" if k.endswith("_s") else ""))
            ax.grid(alpha=0.3, which="both")
        fig.suptitle(_title(dataset, model, f"{lr:g}", f"{budget} · target {t['metric']} "
                                                         f"{'≥' if t['mode'] == 'max' else '≤'} {t['value']:g}"))
        fig.tight_layout()
        legend_below(fig, axes[0], ncol=3)
        stem = out if len(todo) == 1 else out.with_name(f"{out.name}-{dataset}-{model}-lr{lr:g}")
        stem.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(pts).to_csv(ext(stem, ".csv"), index=False)
        figs.append((fig, stem))
    if not figs:
        raise ReportError("the claim figure needs runs of Algorithm 1 with at least two constant p "
                          "(schedule=constant schedule.p=...) or SGD (schedule=none) at one data set, model "
                          "and learning rate, of which some reach the target (lower it with --target): e.g. "
                          "echo-run -m schedule=constant schedule.p=1,0.5,0.25")
    return figs


# ------------------------------------------------------------------------------- the clock check
def clock_check_fig(records, out: Path) -> tuple:
    """(figure, stem): predicted (sim_s) against measured (wall_s) training time, every record a
    small dot and every run's end a large one, coloured per method, with y = x and a ±15 % band.
    ``records``: the DataFrame of ``tables.clock_frame``."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.0, 5.0))
    pos = records[(records.wall_s > 0) & (records.sim_s > 0)]
    for (label, method, ws), g in pos.groupby(["label", "method", "world_size"], sort=True):
        c = colour(method)
        ax.scatter(g.wall_s, g.sim_s, s=14, color=c, alpha=0.45, lw=0)
        ends = g[g.end]
        ax.scatter(ends.wall_s, ends.sim_s, s=60, color=c, edgecolor="black", lw=0.8,
                   marker="o" if ws == 1 else "D", label=f"{label} ({len(ends)} runs)")
    lo = float(min(pos.wall_s.min(), pos.sim_s.min())) if len(pos) else 0.1
    hi = float(max(pos.wall_s.max(), pos.sim_s.max())) if len(pos) else 1.0
    logscale = lo > 0 and hi / lo > 20
    xs = np.geomspace(lo / 1.3, hi * 1.3, 50) if logscale else np.linspace(0, hi * 1.1, 50)
    ax.plot(xs, xs, color="black", lw=1.2, label="sim_s = wall_s")
    ax.fill_between(xs, xs * (1 - BAND), xs * (1 + BAND), color="#888888", alpha=0.2, lw=0,
                    label=f"±{BAND:.0%}")
    if logscale:
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlim(xs[0], xs[-1])
    ax.set_ylim(xs[0], xs[-1])
    ax.set_xlabel("measured training time, wall_s (s)")
    ax.set_ylabel("predicted training time, sim_s (s)")
    ax.grid(alpha=0.3, which="both")
    join = lambda col, f=str: ", ".join(f(v) for v in sorted(records[col].unique()))  # noqa: E731
    fig.suptitle(_title(join("dataset"), join("model"), join("lr", lambda v: f"{v:g}"),
                        "clock check · hardware " + join("hardware")))
    fig.tight_layout()
    legend_below(fig, ax)
    return fig, out
