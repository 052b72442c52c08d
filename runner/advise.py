"""The loader-speed advisor: "my pipeline loads a batch in R step-times: how much echoing should I
use, and what do I gain?"

    python -m runner.advise                                   # digits, R = 1 2 4 8 16, six echo levels
    python -m runner.advise --ratios 1 4 16 --levels none cosine adaptive --seeds 0 1
    python -m runner.advise --set model.width=16 optim.lr=0.1 # any echo-run override for every cell

Every cell of the grid (R x echo level x seed) is one echo-run run on the simulated clock
(``hardware=ratio hardware.ratio=R``) with the same simulated-time budget, enough for plain SGD to
load ``--loads`` examples. A cell whose run already exists (same resolved config, found by its
config hash under ``--runs``, default results/) is read, not re-run; missing cells run in this
process into ``<out>/runs/``. From the records: simulated time to the target (in step-times),
a heatmap, and a Markdown table that recommends, for each R, the level with the shortest time;
levels within ``--tolerance`` of the best count as ties, and the least echoing of them is chosen.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
from pathlib import Path
from typing import Dict, List, Optional

from .metrics import read_jsonl, write_json
from .errors import ConfigError
from .config import config_hash
from .summary import time_to_target

ROOT = Path(__file__).resolve().parent.parent
# Echo levels, from none to the most echoing: the overrides that select each.
LEVELS: Dict[str, tuple] = {
    "none": ("schedule=none",),
    "p=0.5": ("schedule=constant", "schedule.p=0.5"),
    "p=0.25": ("schedule=constant", "schedule.p=0.25"),
    "p=0.125": ("schedule=constant", "schedule.p=0.125"),
    "cosine": ("schedule=cosine",),
    "adaptive": ("echo=adaptive",),
}


def compose(overrides: List[str]):
    from omegaconf import OmegaConf

    from .config import compose as compose_config

    cfg = compose_config(overrides)
    return cfg, OmegaConf.to_container(cfg, resolve=True)


def cell_overrides(R: float, level: str, seed: int, loads: int, extra: List[str], batch_size: int,
                   step_s: float) -> List[str]:
    # The same simulated time for every level at a given R: what plain SGD needs to load `loads`
    # examples when each batch takes max(R, 1) step-times.
    sim_budget = loads / batch_size * max(R, 1.0) * step_s
    return ["logger.progress=false", "checkpoint.enabled=false", "hardware=ratio", f"hardware.ratio={R:g}",
            f"seed={seed}", "budget.example_loads=null", f"budget.sim_s={sim_budget:.6g}",
            *LEVELS[level], *extra]


def index_runs(root: Path) -> Dict[str, Path]:
    """config hash -> run directory, for every finished run below ``root``."""
    found = {}
    for s in Path(root).rglob("summary.json"):
        try:
            summ = json.loads(s.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if summ.get("status") == "complete" and summ.get("config_hash"):
            found.setdefault(summ["config_hash"], s.parent)
    return found


def run_cell(cfg, run_dir: Path) -> Path:
    """Train one cell in this process (continuing a run left unfinished in ``run_dir``)."""
    from .runs import run_once

    return run_once(cfg, run_dir)


def steps_per_load(rec: dict, batch_size: int) -> Optional[float]:
    batches = rec.get("example_loads", 0) / batch_size
    return rec["step"] / batches if batches else None


def grid(ratios: List[float], levels: List[str], seeds: List[int], loads: int, extra: List[str],
         out: Path, runs_root: Path, log=print) -> dict:
    """Find or run every cell; returns the measurements per (R, level)."""
    base, resolved = compose(["hardware=ratio", *extra])
    B, step_s, t = base.data.batch_size, base.hardware.step_s, base.target
    if t.value is None:
        raise ConfigError(f"target.value is not set for data set {base.data.name}: give --set target.value=...")
    known = index_runs(runs_root) if runs_root.exists() else {}
    cells, ran = {}, 0
    for R in ratios:
        for level in levels:
            per_seed = []
            for seed in seeds:
                ov = cell_overrides(R, level, seed, loads, extra, B, step_s)
                cfg, res = compose(ov)
                h = config_hash(res)
                run_dir = known.get(h)
                if run_dir is None:
                    run_dir = out / "runs" / f"R{R:g}-{level}-seed{seed}-{h[:8]}"
                    log(f"advise: running R={R:g} {level} seed {seed} -> {run_dir}")
                    run_cell(cfg, run_dir)
                    ran += 1
                recs = read_jsonl(run_dir / "metrics.jsonl")
                hit = time_to_target(recs, t.metric, t.value, t.mode)
                per_seed.append({"dir": str(run_dir), "reached": hit,
                                 "steps_per_load": steps_per_load(recs[-1], B),
                                 "final": recs[-1].get(t.metric)})
            times = [s["reached"]["sim_s"] / step_s if s["reached"] else None for s in per_seed]
            cells[f"{R:g}|{level}"] = {
                "R": R, "level": level, "seeds": per_seed,
                # Not reached by any seed: no time. Mean over seeds only when every seed reached it.
                "time": statistics.mean(times) if all(v is not None for v in times) else None,
                "steps_per_load": statistics.mean(s["steps_per_load"] for s in per_seed)}
    return {"dataset": base.data.name, "model": base.model._target_.rsplit(".", 1)[-1], "lr": base.optim.lr,
            "target": {"metric": t.metric, "value": t.value, "mode": t.mode}, "batch_size": B, "step_s": step_s,
            "loads": loads, "ratios": ratios, "levels": levels, "seeds": seeds, "extra": extra, "cells": cells,
            "ran": ran}


def recommend(g: dict, tolerance: float) -> Dict[str, dict]:
    """Per R: the least echoing level whose time to target is within ``tolerance`` of the best."""
    out = {}
    for R in g["ratios"]:
        row = {lv: g["cells"][f"{R:g}|{lv}"] for lv in g["levels"]}
        timed = {lv: c["time"] for lv, c in row.items() if c["time"] is not None}
        if not timed:
            out[f"{R:g}"] = {"level": None, "time": None, "speedup": None, "steps_per_load": None}
            continue
        best = min(timed.values())
        ties = [lv for lv in timed if timed[lv] <= best * (1 + tolerance)]
        pick = min(ties, key=lambda lv: (row[lv]["steps_per_load"], timed[lv]))
        sgd = row.get("none", {}).get("time")
        out[f"{R:g}"] = {"level": pick, "time": timed[pick], "speedup": sgd / timed[pick] if sgd else None,
                         "steps_per_load": row[pick]["steps_per_load"], "ties": ties}
    return out


def table(g: dict, rec: Dict[str, dict], tolerance: float) -> str:
    t = g["target"]
    head = ["R"] + g["levels"] + ["recommended", "steps per fresh batch", "speed-up vs none"]
    lines = [f"Simulated time to {t['metric']} {'>=' if t['mode'] == 'max' else '<='} {t['value']} in step-times "
             f"({g['dataset']}, {g['model']}, lr {g['lr']}, batch {g['batch_size']}, seeds {g['seeds']}; "
             f"'-' = not reached within the budget of {g['loads']} example loads for plain SGD; ties within "
             f"{tolerance:.0%} go to the least echoing).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    fmt = lambda v, spec: "-" if v is None else format(v, spec)
    for R in g["ratios"]:
        r = rec[f"{R:g}"]
        cells = [fmt(g["cells"][f"{R:g}|{lv}"]["time"], ".0f") for lv in g["levels"]]
        lines.append("| " + " | ".join([f"{R:g}", *cells, r["level"] or "-", fmt(r["steps_per_load"], ".2f"),
                                        fmt(r["speedup"], ".2f")]) + " |")
    return "\n".join(lines) + "\n"


def heatmap(g: dict, rec: Dict[str, dict], path: Path) -> list:
    """Time to target relative to plain SGD at the same R (lower is better), the value in each cell."""
    import numpy as np

    from .report import _plt, _title, save

    plt = _plt()
    R, L = g["ratios"], g["levels"]
    M = np.full((len(L), len(R)), np.nan)
    for j, r in enumerate(R):
        sgd = g["cells"][f"{r:g}|none"]["time"] if "none" in L else None
        for i, lv in enumerate(L):
            v = g["cells"][f"{r:g}|{lv}"]["time"]
            if v is not None:
                M[i, j] = v / sgd if sgd else v
    fig, ax = plt.subplots(figsize=(1.3 * len(R) + 3, 0.6 * len(L) + 2))
    im = ax.imshow(M, cmap="viridis_r", aspect="auto")
    ax.set_xticks(range(len(R)), [f"{r:g}" for r in R])
    ax.set_yticks(range(len(L)), L)
    ax.set_xlabel("R: step-times to load one batch")
    ax.set_ylabel("echo level")
    for j, r in enumerate(R):
        for i, lv in enumerate(L):
            v = g["cells"][f"{r:g}|{lv}"]["time"]
            txt = "-" if v is None else f"{v:.0f}"
            bold = rec[f"{r:g}"]["level"] == lv
            ax.text(j, i, txt + (" *" if bold else ""), ha="center", va="center", fontsize=11,
                    color="white" if np.isnan(M[i, j]) or M[i, j] > np.nanmean(M) else "black",
                    fontweight="bold" if bold else "normal")
    ax.set_facecolor("#888888")
    t = g["target"]
    unit = "relative to none at the same R" if "none" in L else "in step-times"
    fig.colorbar(im, ax=ax, label=f"time to target, {unit}")
    ax.set_title(_title(g["dataset"], g["model"], str(g["lr"]),
                        f"simulated time to {t['metric']} {t['value']} (step-times; * = recommended)"))
    return save(fig, path)


def advise(ratios, levels, seeds, loads, extra, out: Path, runs_root: Path, tolerance: float, log=print) -> dict:
    g = grid(ratios, levels, seeds, loads, extra, out, runs_root, log)
    rec = recommend(g, tolerance)
    md = table(g, rec, tolerance)
    out.mkdir(parents=True, exist_ok=True)
    (out / "advice.md").write_text(md)
    write_json(out / "grid.json", {**g, "recommendation": rec, "tolerance": tolerance})
    figs = heatmap(g, rec, out / "heatmap")
    return {"grid": g, "recommendation": rec, "table": md, "figures": [str(p) for p in figs]}


def main(argv: Optional[List[str]] = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m runner.advise", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ratios", type=float, nargs="+", default=[1, 2, 4, 8, 16],
                    help="R values: step-times to load one batch")
    ap.add_argument("--levels", nargs="+", default=list(LEVELS), choices=list(LEVELS), help="echo levels")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--loads", type=int, default=2874,
                    help="plain SGD's example loads within the simulated budget (default: 2 epochs of digits)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="echo-run overrides for every cell (dataset=..., model.width=..., optim.lr=...)")
    ap.add_argument("--tolerance", type=float, default=0.05, help="relative tie tolerance")
    ap.add_argument("--out", default=None, help="default: results/advisor/<hash of the workload>")
    ap.add_argument("--runs", default=str(ROOT / "results"), help="where existing runs are looked for")
    a = ap.parse_args(argv)
    extra = ["eval.every_loads=160", *a.set]  # time to target in steps of 5 batches
    tag = hashlib.sha256(json.dumps([extra, a.loads]).encode()).hexdigest()[:8]
    out = Path(a.out) if a.out else ROOT / "results" / "advisor" / tag
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        res = advise(a.ratios, a.levels, a.seeds, a.loads, extra, out, Path(a.runs), a.tolerance)
    except (ConfigError, HydraException, OmegaConfBaseException) as e:
        print(f"advise: error: {e} (check the values given to --set; `echo-run --help` lists every option)",
              file=sys.stderr)
        sys.exit(2)
    print(res["table"])
    print(f"advise: {res['grid']['ran']} runs made, the others read; table {out / 'advice.md'}, "
          f"heatmap {res['figures'][0]}")


if __name__ == "__main__":
    main()
