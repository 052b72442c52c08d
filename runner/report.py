"""``echo-report``: figures and tables from run directories (never trains).

    echo-report runs    DIR...                      # what was found: method, lr, seed, status, final metric
    echo-report curves  DIR... --x step wall_s      # mean over seeds with a min-max band, per method
    echo-report best-lr DIR...                      # best lr per method (Markdown + CSV) and its figure
    echo-report claim   DIR...                      # loads/steps/sim_s to target vs reuses per fresh batch

A DIR is a run directory or any directory above run directories (a multirun's sweep dir, results/):
every directory below it holding ``.hydra/config.yaml`` and ``metrics.jsonl`` is one run. Runs are
grouped by data set, model, budget, method (``runner.summary.method_label``) and learning rate;
the seeds of a group make its mean and band.
"""
from __future__ import annotations

import argparse
import csv
import math
import sys
import textwrap
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import yaml

from .metrics import read_jsonl
from .summary import method_label, time_to_target

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


class ReportError(ValueError):
    """Input the user can fix (no runs, a metric the runs lack); printed as one paragraph, exit 2."""


def colour(method: str) -> str:
    return COLOURS.get(method) or _SPARE[zlib.crc32(method.encode()) % len(_SPARE)]


# ----------------------------------------------------------------------------------------- runs
@dataclass
class Run:
    dir: Path
    config: dict
    records: list
    summary: Optional[dict]

    @property
    def method(self) -> str:
        return (self.summary or {}).get("method") or method_label(self.config)

    @property
    def seed(self) -> int:
        return self.config.get("seed", 0)

    @property
    def lr(self) -> float:
        return self.config["optim"]["lr"]

    @property
    def dataset(self) -> str:
        return self.config["data"]["name"]

    @property
    def model(self) -> str:
        m = self.config["model"]
        name = m["_target_"].rsplit(".", 1)[-1]
        # One builder serves several sizes (mobilenet_v3 small/large, gpt2 tiny/small/...).
        return f"{name}-{m['size']}" if m.get("size") else name

    @property
    def budget(self) -> str:
        b = self.config.get("budget", {})
        return ", ".join(f"{k}={v}" for k, v in b.items() if v is not None)

    @property
    def reuse(self) -> Optional[float]:
        return reuses(self)

    @property
    def status(self) -> str:
        """complete | diverged | incomplete (no summary yet: running, or stopped before the end)."""
        if self.summary is None:
            return "diverged" if any(not _finite(v) for r in self.records[-1:] for v in r.values()
                                     if isinstance(v, (str, float))) else "incomplete"
        return self.summary.get("status", "incomplete")

    def final(self, metric: str) -> float:
        """The metric at the run's end; NaN for a diverged run (its last value means nothing)."""
        if self.status == "diverged" or not self.records:
            return math.nan
        v = self.records[-1].get(metric)
        return float(v) if _finite(v) else math.nan


def _finite(v) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def find_runs(paths) -> list:
    runs = []
    for p in map(Path, paths):
        if not p.exists():
            raise ReportError(f"{p} does not exist. Give run directories or directories above them "
                              "(a multirun's sweep directory, results/).")
        for cfg_file in sorted(p.rglob(".hydra/config.yaml")):
            d = cfg_file.parent.parent
            if not (d / "metrics.jsonl").exists():
                continue  # a run that has not written its first record yet
            summary = d / "summary.json"
            runs.append(Run(d, yaml.safe_load(cfg_file.read_text()), read_jsonl(d / "metrics.jsonl"),
                            _read_json(summary) if summary.exists() else None))
    if not runs:
        raise ReportError("no runs were found under " + ", ".join(map(str, paths)) + ": a run directory "
                          "holds .hydra/config.yaml and metrics.jsonl (echo-run writes both). Point "
                          "echo-report at a run directory, a multirun's sweep directory, or results/.")
    return runs


def _read_json(path: Path) -> Optional[dict]:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def group(runs, *keys) -> dict:
    out: dict = {}
    for r in runs:
        out.setdefault(tuple(getattr(r, k) for k in keys), []).append(r)
    return dict(sorted(out.items(), key=lambda kv: tuple(map(_sort_key, kv[0]))))


def _sort_key(v):
    return (0, v, "") if isinstance(v, (int, float)) else (1, 0, str(v))


def default_metric(runs) -> str:
    return "test_ppl" if any(r.config["data"].get("task") == "language" for r in runs) else "test_acc"


def mode_of(metric: str) -> str:
    return "max" if metric.endswith("acc") else "min"


# --------------------------------------------------------------------------------- curve maths
def series(run: Run, x: str, y: str) -> tuple:
    pts = [(float(r[x]), float(r[y])) for r in run.records if _finite(r.get(x)) and _finite(r.get(y))]
    pts.sort()
    return np.array([p[0] for p in pts]), np.array([p[1] for p in pts])


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


# ------------------------------------------------------------------------------------ plotting
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
    paths = [_ext(out, ".png"), _ext(out, ".pdf")]
    fig.savefig(paths[0], dpi=110, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight", metadata={"CreationDate": None})  # same runs, same bytes
    import matplotlib.pyplot as plt

    plt.close(fig)
    return paths


def _ext(stem: Path, suffix: str) -> Path:
    # Not with_suffix: a stem like "curves-lr0.05" has no suffix to replace.
    return stem.with_name(stem.name + suffix)


def _title(dataset: str, model: str, lr: str, extra: str = "") -> str:
    t = f"{dataset} · {model} · lr {lr}"
    return textwrap.fill(t + (f" · {extra}" if extra else ""), 90)


def plot_methods(ax, by_method: dict, x: str, y: str, labels: Optional[dict] = None, ylim=None) -> None:
    """One line per method (mean over its seeds) with a min-max band; diverged seeds are left out
    of the mean and counted in the legend. Against example loads, epochs are on the top axis."""
    for method, runs in by_method.items():
        ok = [r for r in runs if r.status != "diverged"]
        label = (labels or {}).get(method, method)
        if len(runs) > 1:
            label += f" ({len(ok)} seeds)" if len(ok) == len(runs) else f" ({len(runs) - len(ok)}/{len(runs)} diverged)"
        elif len(ok) < len(runs):
            label += " (diverged)"
        mb = mean_band(ok, x, y)
        if mb is None:
            ax.plot([], [], color=colour(method), label=label, ls=":")
            continue
        g, m, lo, hi = mb
        ax.plot(g, m, color=colour(method), label=label, lw=1.8)
        if len(ok) > 1:
            ax.fill_between(g, lo, hi, color=colour(method), alpha=0.18, lw=0)
    ax.set_xlabel(XS.get(x, x))
    ax.set_ylabel(YS.get(y, y))
    if y == "test_ppl":
        ax.set_yscale("log")
    if ylim:
        ax.set_ylim(*ylim)
    ax.grid(alpha=0.3)
    per_epoch = _loads_per_epoch([r for rs in by_method.values() for r in rs])
    if x == "example_loads" and per_epoch:
        top = ax.secondary_xaxis("top", functions=(lambda v: v / per_epoch, lambda e: e * per_epoch))
        top.set_xlabel(XS["epoch"])


def _loads_per_epoch(runs) -> Optional[float]:
    for run in runs:
        for r in run.records:
            if _finite(r.get("epoch")) and r["epoch"] > 0:
                return r["example_loads"] / r["epoch"]
    return None


def _available(runs, x: str) -> bool:
    return any(_finite(r.get(x)) for run in runs for r in run.records[1:])


def curves_figs(runs, xs, y: str, out: Path, ylim=None) -> list:
    """[(figure, path stem)]: one per (data set, model, budget, lr), a panel per x axis, a line per
    method."""
    figs = []
    combos = group(runs, "dataset", "model", "budget", "lr")
    for (dataset, model, _, lr), rs in combos.items():
        axes_x = [x for x in xs if _available(rs, x)]
        if not axes_x or not _available(rs, y):
            continue
        plt = _plt()
        cols = min(len(axes_x), 2)  # two columns keep the figure printable at its saved size
        rows = -(-len(axes_x) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols + 0.4, 4.0 * rows + 0.4), squeeze=False)
        by_method = {m: v for (m,), v in group(rs, "method").items()}
        for ax, x in zip(axes.flat, axes_x):
            plot_methods(ax, by_method, x, y, ylim=ylim)
        for ax in list(axes.flat)[len(axes_x):]:
            ax.set_visible(False)
        axes[0][0].legend(loc="best", frameon=False)
        fig.suptitle(_title(dataset, model, f"{lr:g}", "mean over seeds, band: min to max"))
        fig.tight_layout()
        figs.append((fig, out if len(combos) == 1 else out.with_name(f"{out.name}-{dataset}-{model}-lr{lr:g}")))
    if not figs:
        raise ReportError(f"none of the runs has records with {y!r} against {', '.join(xs)}: check the "
                          "metric (test_acc for classification, test_ppl for language) and the x axes.")
    return figs


# ------------------------------------------------------------------------------ best learning rate
def lr_table(runs, metric: str) -> list:
    """One row per (data set, model, budget, method, lr): the final metric over seeds. A diverged
    seed makes its learning rate ineligible; the best is the best mean among the rest."""
    mode = mode_of(metric)
    rows = []
    for (dataset, model, budget, method), rs in group(runs, "dataset", "model", "budget", "method").items():
        cand = []
        for (lr,), seeds in group(rs, "lr").items():
            vals = np.array([s.final(metric) for s in seeds if s.status == "complete"])
            diverged = sum(s.status == "diverged" for s in seeds)
            incomplete = sum(s.status not in ("complete", "diverged") for s in seeds)
            loads = [s.records[-1].get("example_loads") for s in seeds if s.records]
            row = {"dataset": dataset, "model": model, "budget": budget, "method": method, "lr": lr,
                   "metric": metric, "seeds": len(seeds), "diverged": diverged, "incomplete": incomplete,
                   "mean": float(vals.mean()) if len(vals) else math.nan,
                   "std": float(vals.std(ddof=1)) if len(vals) > 1 else (0.0 if len(vals) else math.nan),
                   "min": float(vals.min()) if len(vals) else math.nan,
                   "max": float(vals.max()) if len(vals) else math.nan,
                   "example_loads": int(np.mean(loads)) if loads else None, "best": False}
            row["eligible"] = diverged == 0 and incomplete == 0 and math.isfinite(row["mean"])
            cand.append(row)
        ok = [r for r in cand if r["eligible"]]
        if ok:
            best = max(ok, key=lambda r: r["mean"]) if mode == "max" else min(ok, key=lambda r: r["mean"])
            best["best"] = True
        rows += cand
    return rows


def best_rows(rows) -> list:
    """The best row of each method; a method whose every learning rate diverged or did not finish
    gets a row saying so, so that it is never silently missing."""
    out, seen = [], set()
    for r in rows:
        key = (r["dataset"], r["model"], r["budget"], r["method"])
        if r["best"]:
            out.append(r)
            seen.add(key)
    for r in rows:
        key = (r["dataset"], r["model"], r["budget"], r["method"])
        if key not in seen:
            seen.add(key)
            out.append({**r, "lr": None, "mean": math.nan, "std": math.nan, "min": math.nan, "max": math.nan})
    return out


def _cell(r: dict) -> str:
    if r["diverged"]:
        return f"diverged ({r['diverged']}/{r['seeds']} seeds)"
    if r["incomplete"]:
        return f"incomplete ({r['incomplete']}/{r['seeds']} seeds)"
    return f"{r['mean']:.4g} ± {r['std']:.2g} [{r['min']:.4g}, {r['max']:.4g}]"


def write_tables(rows, out: Path) -> list:
    out.parent.mkdir(parents=True, exist_ok=True)
    cols = ["dataset", "model", "budget", "method", "lr", "metric", "seeds", "diverged", "incomplete", "mean",
            "std", "min", "max", "example_loads", "best"]
    with open(_ext(out, ".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    metric = rows[0]["metric"]
    lines = [f"# Best learning rate per method", "",
             f"By the mean final `{metric}` over seeds ({'higher' if mode_of(metric) == 'max' else 'lower'} is "
             "better), all runs of a table at the same budget; `mean ± std [min, max]` over seeds. A learning "
             "rate with a diverged seed is not eligible.", ""]
    for (dataset, model, budget), rs in _by(rows, "dataset", "model", "budget").items():
        lines += [f"## {dataset} · {model} · {budget}", "", "| method | best lr | final " + metric
                  + " | seeds | example loads |", "|---|---|---|---|---|"]
        for r in best_rows(rs):
            lr = f"{r['lr']:g}" if r["lr"] is not None else "none (every lr diverged or is incomplete)"
            lines.append(f"| {r['method']} | {lr} | {_cell(r) if r['lr'] is not None else '—'} | {r['seeds']} | "
                         f"{r['example_loads']} |")
        lrs = sorted({r["lr"] for r in rs})
        methods = list(dict.fromkeys(r["method"] for r in rs))
        lines += ["", "Every learning rate (best in bold):", "",
                  "| method | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " |", "|---" * (len(lrs) + 1) + "|"]
        for m in methods:
            cells = []
            for lr in lrs:
                r = next((r for r in rs if r["method"] == m and r["lr"] == lr), None)
                c = "" if r is None else _cell(r).split(" [")[0]
                cells.append(f"**{c}**" if r is not None and r["best"] else c)
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines.append("")
    _ext(out, ".md").write_text("\n".join(lines))
    return [_ext(out, ".md"), _ext(out, ".csv")]


def _by(rows, *keys) -> dict:
    out: dict = {}
    for r in rows:
        out.setdefault(tuple(r[k] for k in keys), []).append(r)
    return out


def best_figs(runs, rows, x: str, y: str, out: Path, ylim=None) -> list:
    """[(figure, path stem)]: each method at its own best learning rate, one figure per (data set,
    model, budget)."""
    figs = []
    best = {(r["dataset"], r["model"], r["budget"], r["method"]): r["lr"] for r in rows if r["best"]}
    combos = group(runs, "dataset", "model", "budget")
    for (dataset, model, budget), rs in combos.items():
        by_method, labels = {}, {}
        for (m,), mr in group(rs, "method").items():
            lr = best.get((dataset, model, budget, m))
            if lr is not None:
                by_method[m] = [r for r in mr if r.lr == lr]
                labels[m] = f"{m}, lr {lr:g}"
        if not by_method:
            continue
        plt = _plt()
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        plot_methods(ax, by_method, x, y, labels, ylim=ylim)
        ax.legend(loc="best", frameon=False)
        lrs = ", ".join(f"{m} {best[(dataset, model, budget, m)]:g}" for m in by_method)
        fig.suptitle(_title(dataset, model, f"best per method: {lrs}"))
        fig.tight_layout()
        figs.append((fig, out if len(combos) == 1 else out.with_name(f"{out.name}-{dataset}-{model}")))
    return figs


# ------------------------------------------------------------------------------------ the claim
def reuses(run: Run) -> Optional[float]:
    """Expected steps per fresh batch, 1/p, for Algorithm 1 with a constant p (SGD: 1); None for
    the other methods (their reuse changes over the run)."""
    e, s = run.config["echo"], run.config["schedule"]
    if e["policy"] != "stochastic" or run.config.get("comm", {}).get("name", "none") != "none":
        return None
    if s["name"] == "none":
        return 1.0
    return 1.0 / s["p"] if s["name"] == "constant" else None


def to_target(run: Run, metric: str, value: float, mode: str) -> Optional[dict]:
    return time_to_target(run.records, metric, value, mode) if run.status != "diverged" else None


def claim_points(runs, metric: str, value: float, mode: str) -> list:
    """Per reuse level: the mean over seeds of loads, steps and sim_s to target; a level where any
    seed missed the target is 'not reached' (a mean over the lucky seeds would flatter it)."""
    pts = []
    for (r_,), rs in group([r for r in runs if reuses(r) is not None], "reuse").items():
        hits = [to_target(r, metric, value, mode) for r in rs]
        p = {"reuse": r_, "seeds": len(rs), "reached": sum(h is not None for h in hits)}
        for k in ("example_loads", "step", "sim_s"):
            vals = [h[k] for h in hits if h is not None and _finite(h.get(k))]
            p[k] = float(np.mean(vals)) if vals and p["reached"] == len(rs) else math.nan
            p[k + "_sd"] = float(np.std(vals)) if len(vals) > 1 and p["reached"] == len(rs) else 0.0
        pts.append(p)
    return pts


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

        from .simclock import batch_load_s

        per_batch = batch_load_s(OmegaConf.create(hw), batch)
        return np.maximum(base["example_loads"] / batch / r * per_batch, base["step"] * hw["step_s"])
    return None


def claim_figs(runs, metric: str, value: Optional[float], out: Path) -> list:
    """[(figure, path stem)]: loads, steps and sim_s to target against 1/p, one per (data set,
    model, budget, lr) with at least two reuse levels; each also gets a CSV of its points."""
    todo = []
    for (dataset, model, budget, lr), rs in group(runs, "dataset", "model", "budget", "lr").items():
        rs = [r for r in rs if r.reuse is not None]
        if len({r.reuse for r in rs}) < 2:
            continue
        t = rs[0].config.get("target", {})
        v = value if value is not None else t.get("value")
        mode = t.get("mode", mode_of(metric)) if value is None else mode_of(metric)
        if v is None:
            raise ReportError("the runs have no target (target.value) and none was given: pass --target.")
        pts = claim_points(rs, metric, v, mode)
        if any(p["reached"] for p in pts):  # a learning rate that never gets there has nothing to show
            todo.append(((dataset, model, budget, lr), rs, v, mode, pts))
    figs = []
    for (dataset, model, budget, lr), rs, v, mode, pts in todo:
        keys = [k for k in ("example_loads", "step", "sim_s") if _available(rs, k)]
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
            ax.legend(loc="best", frameon=False, fontsize=10)
        fig.suptitle(_title(dataset, model, f"{lr:g}", f"{budget} · target {metric} "
                                                         f"{'≥' if mode == 'max' else '≤'} {v:g}"))
        fig.tight_layout()
        stem = out if len(todo) == 1 else out.with_name(f"{out.name}-{dataset}-{model}-lr{lr:g}")
        stem.parent.mkdir(parents=True, exist_ok=True)
        _write_claim_csv(pts, stem)
        figs.append((fig, stem))
    if not figs:
        raise ReportError("the claim figure needs runs of Algorithm 1 with at least two constant p "
                          "(schedule=constant schedule.p=...) or SGD (schedule=none) at one data set, model "
                          "and learning rate, of which some reach the target (lower it with --target): e.g. "
                          "echo-run -m schedule=constant schedule.p=1,0.5,0.25")
    return figs


def _write_claim_csv(pts, out: Path) -> None:
    with open(_ext(out, ".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(pts[0]))
        w.writeheader()
        w.writerows(pts)


# ------------------------------------------------------------------------- table beside the curves
def method_table(runs, metric: str) -> str:
    """Markdown: per (data set, model, lr, method), the final metric and each clock to the runs'
    target, mean ± sd over seeds ('—' where a seed missed the target)."""
    lines = []
    for (dataset, model, budget, lr), rs in group(runs, "dataset", "model", "budget", "lr").items():
        t = rs[0].config.get("target", {})
        if t.get("value") is None:
            continue
        op = "≥" if t.get("mode", "max") == "max" else "≤"
        lines += [f"### {dataset} · {model} · lr {lr:g} · {budget}", "",
                  f"| method | seeds | final {metric} | to {t['metric']} {op} {t['value']:g}: example loads | "
                  "steps | sim_s | wall_s |", "|---|---|---|---|---|---|---|"]
        for (m,), mr in group(rs, "method").items():
            fin = np.array([r.final(metric) for r in mr])
            hits = [to_target(r, t["metric"], t["value"], t.get("mode", "max")) for r in mr]

            def cell(k):
                if all(h is not None and h.get(k) is None for h in hits):
                    return "n/a"  # a clock these runs do not keep (sim_s without a hardware profile)
                v = [h[k] for h in hits if h is not None and _finite(h.get(k))]
                f = ".2f" if k.endswith("_s") else ".0f"
                return f"{np.mean(v):{f}} ± {np.std(v):{f}}" if len(v) == len(mr) else "—"

            div = sum(r.status == "diverged" for r in mr)
            final = f"{np.nanmean(fin):.4f} ± {np.nanstd(fin):.4f}" if div < len(mr) else "diverged"
            lines.append(f"| {m} | {len(mr)}{f' ({div} diverged)' if div else ''} | {final} | "
                         + " | ".join(cell(k) for k in ("example_loads", "step", "sim_s", "wall_s")) + " |")
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- CLI
def runs_table(runs, metric: str) -> str:
    lines = [f"{'method':<22} {'lr':>8} {'seed':>5} {'status':<10} {'loads':>8} {'steps':>7} {metric:>10}  dir"]
    for r in sorted(runs, key=lambda r: (r.dataset, r.method, r.lr, r.seed)):
        last = r.records[-1] if r.records else {}
        v = r.final(metric)
        lines.append(f"{r.method:<22} {r.lr:>8g} {r.seed:>5} {r.status:<10} {last.get('example_loads', ''):>8} "
                     f"{last.get('step', ''):>7} {v:>10.4g}  {r.dir}")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="echo-report", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p, out: Optional[str]):
        p.add_argument("dirs", nargs="+", help="run directories or directories above them")
        p.add_argument("--metric", help="test_acc | test_ppl | test_loss | train_loss (default: by task)")
        p.add_argument("--ylim", nargs=2, type=float, metavar=("LO", "HI"), help="the metric axis' range")
        if out:
            p.add_argument("--out", default=out, help="output path without extension (default: %(default)s)")
        return p

    common(sub.add_parser("runs", help="list the runs found"), None)
    p = common(sub.add_parser("curves", help="metric vs clocks, one line per method"), "results/figures/curves")
    p.add_argument("--x", nargs="+", default=["example_loads", "step", "wall_s", "sim_s"], choices=list(XS))
    p = common(sub.add_parser("best-lr", help="best learning rate per method: table and figure"),
               "results/figures/best_lr")
    p.add_argument("--x", default="example_loads", choices=list(XS))
    p = common(sub.add_parser("claim", help="loads/steps/sim_s to target vs reuses per fresh batch"),
               "results/figures/claim")
    p.add_argument("--target", type=float, help="the target value (default: the runs' target.value)")
    return ap


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        runs = find_runs(args.dirs)
        metric = args.metric or default_metric(runs)
        if not any(_finite(r.get(metric)) for run in runs for r in run.records):
            raise ReportError(f"no record of these runs holds {metric!r}; choose --metric test_acc "
                              "(classification), test_ppl (language), test_loss or train_loss.")
        if args.cmd == "runs":
            print(runs_table(runs, metric))
            return 0
        out = Path(args.out)
        written = []
        if args.cmd == "curves":
            figs = curves_figs(runs, args.x, metric, out, args.ylim)
            table = method_table(runs, metric)
            if table:
                out.parent.mkdir(parents=True, exist_ok=True)
                _ext(out, ".md").write_text(table)
                written.append(_ext(out, ".md"))
                print(table)
        elif args.cmd == "best-lr":
            rows = lr_table(runs, metric)
            written = write_tables(rows, out)
            figs = best_figs(runs, rows, args.x, metric, out, args.ylim)
            print(_ext(out, ".md").read_text())
        else:
            figs = claim_figs(runs, metric, args.target, out)
            written = [_ext(stem, ".csv") for _, stem in figs]
        for fig, stem in figs:
            written += save(fig, stem)
    except ReportError as e:
        print(f"echo-report: error: {e}", file=sys.stderr)
        return 2
    for w in written:
        print(f"echo-report: wrote {w}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
