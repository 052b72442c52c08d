"""The pilot grid: echo levels x seeds (x loader ratios) on the simulated clock, each run stopping
at the target.

Every cell is one echo-run run, composed from the workload's overrides and started through
``runner.runs.run_once`` in this process; only its records (``summary.json``, ``metrics.jsonl``) are
read back. A column is one loader ratio R under one hardware profile: the measured one (R as
measured), or ``hardware.ratio=R`` for ``--ratios``.

The pilot's cost is bounded before it starts:
- every cell of a column has the same simulated-time budget ``budget.sim_s``: what plain SGD needs,
  on that column's simulated clock, to load ``--budget-fraction`` of the workload's budget (its
  ``budget.example_loads``, or ``budget.steps`` steps); a run stops earlier at the target
  (``target.stop=true``);
- evaluations every ``eval.every_loads`` = that many loads / ``--evals``;
- at most ``--max-runs`` new runs in one call: the rest wait for the next call.

A cell is found again by the hash of its resolved config (``runner.config.config_hash``) among the
finished runs below the output directory (and ``--runs``), so a grid left partial by ``--max-runs``,
an interruption or an error is continued, never re-run, by the same command.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence

from ..errors import ConfigError
from ..metrics import read_jsonl, write_json
from . import levels as L

# What the advisor sets in every cell, after the workload's own overrides.
FIXED = ("logger.progress=false", "checkpoint.enabled=false", "target.stop=true", "budget.example_loads=null",
         "budget.steps=null")
# Metrics the loop records, per task, with the range they can take.
METRICS = {"classification": {"test_acc": (0.0, 1.0), "test_loss": (0.0, math.inf), "train_loss": (0.0, math.inf)},
           "language": {"test_ppl": (1.0, math.inf), "test_loss": (0.0, math.inf), "train_loss": (0.0, math.inf)}}


def compose(overrides: Sequence[str]):
    from ..config import compose as compose_config

    return compose_config(list(overrides))


def check_overrides(overrides: Sequence[str]) -> None:
    """The advisor chooses the echo level of every cell: the workload must not."""
    for o in overrides:
        key = o.lstrip("+~").split("=", 1)[0]
        if key.split(".")[0] in ("echo", "schedule"):
            raise ConfigError(f"the override {o!r} chooses the echo level, which the advisor sets in every cell: drop "
                              "it and give the levels to compare with --levels (none, p=P, cosine, adaptive, e=E).")


def check_target(cfg, task: Optional[str] = None) -> None:
    """A target that the runs can reach; ConfigError otherwise (before anything runs)."""
    t = cfg.target
    if t.value is None:
        raise ConfigError(f"the data set {cfg.data.name} has no target: the advisor compares the time to a target. "
                          f"Give one, e.g. target.value=0.9 (target.metric={t.metric}, target.mode={t.mode}).")
    known = METRICS.get(task) if task else {k: v for m in METRICS.values() for k, v in m.items()}
    if t.metric not in known:
        raise ConfigError(f"target.metric={t.metric} is never recorded by {'this ' + task + ' workload' if task else 'a run'}: "
                          f"its records hold {', '.join(known)}. Choose one of them (e.g. target.metric=test_acc "
                          "target.value=0.9).")
    lo, hi = known[t.metric]
    v = float(t.value)
    if (t.mode == "max" and v > hi) or (t.mode == "min" and v < lo) or not math.isfinite(v):
        bound = f"at most {hi:g}" if t.mode == "max" else f"at least {lo:g}"
        raise ConfigError(f"the target {t.metric} {'>=' if t.mode == 'max' else '<='} {v:g} can never be reached: "
                          f"{t.metric} is always {bound}. Give a reachable target.value (the data set's default "
                          "is in conf/dataset/).")


def loads_per_step(cfg) -> int:
    from ..schema import expected_world

    return int(cfg.data.batch_size) * int(expected_world(cfg.launcher) or 1)


def column(base_overrides: List[str], hw: List[str], R_label: Optional[float], fraction: float, evals: int) -> dict:
    """One column of the grid: its hardware overrides, its R and its simulated-time budget."""
    from ..simclock import batch_load_s, from_config

    cfg = compose([*base_overrides, *hw])
    h, B = cfg.hardware, int(cfg.data.batch_size)
    per_step = loads_per_step(cfg)
    b = cfg.budget
    if b.example_loads:
        n = max(1, math.ceil(fraction * b.example_loads / per_step))
    elif b.steps:
        n = max(1, math.ceil(fraction * b.steps))
    else:
        raise ConfigError("the workload's budget is in simulated seconds (budget.sim_s) only: give it in example "
                          "loads (budget.example_loads=N), which --budget-fraction takes a fraction of.")
    clock = from_config(h, B)
    for _ in range(n):  # plain SGD on this column's clock: every step loads
        clock.load()
        clock.step()
    R = batch_load_s(h, B) / h.step_s
    every = per_step * max(1, round(n / max(evals, 1)))
    return {"R": R if R_label is None else float(R_label), "hardware": list(hw), "sim_s": clock.t,
            "sgd_loads": n * per_step, "steps_max": math.ceil(clock.t / h.step_s), "every_loads": every,
            "step_s": h.step_s, "batch_load_s": batch_load_s(h, B), "hardware_name": h.name,
            "hardware_cfg": _plain(h)}


def _plain(node) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(node, resolve=True)


def cell_overrides(base_overrides: List[str], col: dict, level: L.Level, seed: int) -> List[str]:
    return [*base_overrides, *col["hardware"], *FIXED, f"budget.sim_s={col['sim_s']:.12g}",
            f"eval.every_loads={col['every_loads']}", f"seed={seed}", *level.overrides]


def index_runs(roots: Iterable[Path]) -> Dict[str, Path]:
    """config hash -> directory of every finished (complete or diverged) run below ``roots``."""
    found: Dict[str, Path] = {}
    for root in roots:
        if not Path(root).is_dir():
            continue
        for s in Path(root).rglob("summary.json"):
            try:
                summ = json.loads(s.read_text())
            except (OSError, ValueError):
                continue
            if summ.get("status") in ("complete", "diverged") and summ.get("config_hash"):
                found.setdefault(summ["config_hash"], s.parent)
    return found


def read_cell(run_dir: Path, per_step: int) -> dict:
    """What the advisor keeps of a finished run: when it reached the target, how much it echoed."""
    summ = json.loads((Path(run_dir) / "summary.json").read_text())
    recs = read_jsonl(Path(run_dir) / "metrics.jsonl")
    last = recs[-1] if recs else {}
    hit = summ.get("target", {}).get("reached")
    fresh = (last.get("example_loads") or 0) / per_step
    metric = summ.get("target", {}).get("metric")
    best = [r.get(metric) for r in recs if isinstance(r.get(metric), (int, float))]
    mode = summ.get("target", {}).get("mode", "max")
    return {"dir": str(run_dir), "status": summ.get("status"), "reached": hit,
            "sim_s": hit.get("sim_s") if hit else None, "wall_s": hit.get("wall_s") if hit else None,
            "steps_per_fresh": (last.get("step", 0) / fresh) if fresh else None,
            "best": (max(best) if mode == "max" else min(best)) if best else None,
            "recorded": metric in last, "end": {k: last.get(k) for k in ("step", "example_loads", "sim_s", "wall_s")}}


class Pilot:
    """Finds or runs the cells; ``state()`` is what grid.json holds (partial until every cell is in)."""

    def __init__(self, base_overrides: List[str], columns: List[dict], levels: List[L.Level], seeds: List[int],
                 out: Path, roots: Sequence[Path] = (), max_runs: Optional[int] = None, log=print,
                 meta: Optional[dict] = None):
        self.base, self.columns, self.levels, self.seeds = list(base_overrides), columns, levels, list(seeds)
        self.out, self.max_runs, self.log, self.meta = Path(out), max_runs, log, dict(meta or {})
        self.known = index_runs([self.out, *roots])
        self.cells: Dict[str, dict] = {}  # "R|level|seed" -> read_cell(...) + config facts
        self.ran, self.reused, self.spent_s = 0, 0, 0.0
        self.plan = [cell for c in columns for lv in levels for cell in self._plan(c, lv)]

    @staticmethod
    def key(R: float, level: str, seed: int) -> str:
        return f"{R:.6g}|{level}|{seed}"

    def _plan(self, col: dict, level: L.Level) -> List[dict]:
        """The cells of one level in one column: composed once, the seed set on copies (composing is
        the slow part, and ``seed=S`` as an override gives the same config)."""
        import copy

        from ..config import config_hash, resolved

        first = compose(cell_overrides(self.base, col, level, self.seeds[0]))
        amount, per_step = L.amount(first, col["R"]), loads_per_step(first)
        out = []
        for seed in self.seeds:
            cfg = copy.deepcopy(first)
            cfg.seed = seed
            h = config_hash(resolved(cfg))
            out.append({"key": self.key(col["R"], level.name, seed), "col": col, "level": level, "seed": seed,
                        "overrides": cell_overrides(self.base, col, level, seed), "cfg": cfg, "hash": h,
                        "amount": amount, "per_step": per_step, "done": self.known.get(h)})
        return out

    def missing(self) -> int:
        return sum(p["done"] is None for p in self.plan)

    def order(self) -> List[dict]:
        # Plain SGD first: if it cannot reach the target within the budget, nothing else is worth running.
        # Then seed by seed, so that a partial grid already compares every level.
        return sorted(self.plan, key=lambda p: (p["level"].name != "none", p["seed"], p["col"]["R"]))

    def run(self, on_cell: Optional[Callable[[dict], None]] = None) -> None:
        from ..runs import run_once
        from .measure import starting

        for p in self.order():
            run_dir = p["done"]
            if run_dir is None:
                if self.max_runs is not None and self.ran >= self.max_runs:
                    self.save()
                    raise ConfigError(
                        f"the pilot budget is too small for the grid: --max-runs {self.max_runs} allowed {self.ran} new "
                        f"runs in this call and {self.missing()} cells are still missing. The {len(self.cells)} finished "
                        f"cells are kept in {self.out} (grid.json holds the partial grid): run the same command again to "
                        "continue where it stopped, or raise --max-runs, or give fewer --levels / --seeds.")
                run_dir = self.out / "runs" / f"R{p['col']['R']:.3g}-{p['level'].slug}-seed{p['seed']}-{p['hash'][:8]}"
                self.log(f"advise: running {p['level'].name} seed {p['seed']} at R={p['col']['R']:.3g} -> {run_dir}")
                t = time.perf_counter()
                with starting(f"the run of {p['level'].name} (seed {p['seed']})"):
                    run_once(p["cfg"], run_dir)
                self.spent_s += time.perf_counter() - t
                self.ran += 1
                p["done"] = run_dir
            else:
                self.reused += 1
            c = read_cell(run_dir, p["per_step"])
            c.update(R=p["col"]["R"], level=p["level"].name, seed=p["seed"], amount=p["amount"], hash=p["hash"])
            self.cells[p["key"]] = c
            if on_cell is not None:
                on_cell(c)
        self.save()

    def state(self) -> dict:
        return {**self.meta, "columns": [{k: v for k, v in c.items()} for c in self.columns],
                "levels": [{"name": lv.name, "overrides": list(lv.overrides)} for lv in self.levels],
                "seeds": self.seeds, "base_overrides": self.base, "cells": self.cells,
                "complete": len(self.cells) == len(self.plan), "ran": self.ran, "reused": self.reused,
                "spent_s": self.spent_s}

    def save(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        write_json(self.out / "grid.json", self.state())
