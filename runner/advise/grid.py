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

Each level runs at its own learning rate, chosen per loader ratio by successive halving over
``--rates N`` rates ``STEP`` = 2x apart around the workload's (default 3: lr/2, lr, 2 lr; ``rates_around``):
1. rung 1: every rate runs, on the first seed, to 1/``ETA`` = 1/3 of the pilot's simulated-time
   budget (5 to 9 rates: a first rung at 1/9);
2. the rates of a rung are ranked (``rank_rates``): more seeds at the target, then the shorter
   geometric mean over seeds of the simulated time to it, then fewer diverged seeds, then the better
   mean best value of the target's metric, then the rate nearest the workload's; the best third (at
   least one) go on to the next rung, at 3x the budget; the others stop there;
3. the last rung runs the one rate left at the full budget on every seed: those runs are the level's
   cells, whose time the recommendation compares (plain SGD at its best rate against each level at
   its own), with an interval over the seeds.
A rung's run is a run of its own, not the start of the next rung's: the learning-rate and echo
schedules follow the budget. The rate is chosen on one seed so that the search costs little beside
the seeds' runs: with 3 rates and 3 seeds a level costs 3 runs at 1/3 of the budget and 3 at all of
it, at most 4/3 of the simulated time of one rate (``rung_cost``; with one seed, twice); the final
runs stop at the target, so the share of the search is larger in practice. ``--same-rate`` (or
``--rates 1``): the workload's rate for every level, one run per level and seed, and the advice says
so.

A cell is found again by the hash of its resolved config (``runner.config.config_hash``) among the
finished runs below the output directory (and ``--runs``), so a grid left partial by ``--max-runs``,
an interruption or an error is continued, never re-run, by the same command.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from ..errors import ConfigError
from ..schema import METRICS, target_text
from ..metrics import read_jsonl, write_json
from . import levels as L

# What the advisor sets in every cell, after the workload's own overrides.
FIXED = ("logger.progress=false", "checkpoint.enabled=false", "target.stop=true", "budget.example_loads=null",
         "budget.steps=null")
# Successive halving over learning rates: each rung keeps the best third of its rates, at 3x the budget.
ETA = 3
STEP = 2.0  # the rates of a level are this factor apart
RATES = 3  # rates per level by default: lr/2, lr, 2 lr


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
        raise ConfigError(f"the target {target_text(t)} can never be reached: "
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


def cell_overrides(base_overrides: List[str], col: dict, level: L.Level, seed: int, lr: Optional[float] = None,
                   sim_s: Optional[float] = None) -> List[str]:
    """The overrides of one cell: the workload's, the column's hardware, the pilot's fixed settings, the
    level's; ``lr`` the cell's learning rate (None: the workload's), ``sim_s`` its budget (None: the column's)."""
    return [*base_overrides, *col["hardware"], *FIXED, f"budget.sim_s={col['sim_s'] if sim_s is None else sim_s:.12g}",
            f"eval.every_loads={col['every_loads']}", f"seed={seed}", *level.overrides,
            *([] if lr is None else [f"optim.lr={lr:.12g}"])]


# --------------------------------------------------------------- the learning rates of each level
def rates_around(lr: float, n: int) -> List[float]:
    """``n`` learning rates ``STEP`` (x2) apart around the workload's ``lr``: lr/2, lr, 2 lr for 3
    (an even number has one more above than below: lr, 2 lr for 2)."""
    return [float(f"{lr * STEP ** k:.12g}") for k in range(-((n - 1) // 2), n // 2 + 1)]


def rungs(n: int, eta: int = ETA) -> List[Tuple[int, float]]:
    """Successive halving over ``n`` rates: (rates run, fraction of the pilot's budget) per rung. Each
    rung keeps the best 1/eta of its rates (at least one), and the budget grows eta-fold per rung, so
    that the last rung runs one rate at the full budget: 3 rates -> [(3, 1/3), (1, 1)]; 5 -> [(5, 1/9),
    (2, 1/3), (1, 1)]; 1 -> [(1, 1)] (no halving)."""
    counts = [int(n)]
    while counts[-1] > 1:
        counts.append(math.ceil(counts[-1] / eta))
    last = len(counts) - 1
    return [(c, float(eta) ** (k - last)) for k, c in enumerate(counts)]


def rung_cost(n: int, seeds: int, eta: int = ETA) -> float:
    """The pilot's simulated-time budget with ``n`` rates over that of one rate (an upper bound: runs stop
    at the target): the rungs before the last on one seed, the last on ``seeds``."""
    steps = rungs(n, eta)
    return (sum(c * f for c, f in steps[:-1]) + seeds) / seeds


def rank_rates(by_rate: Dict[float, List[dict]], mode: str, lr: float) -> List[float]:
    """The rates of one rung of one level, best first. A rate's cells (one per seed, from ``read_cell``)
    rank by: more seeds at the target; then the shorter geometric mean over seeds of the simulated
    time to it (when every seed reached it); then fewer diverged seeds; then the better mean over seeds
    of the best value of the target's metric; then the rate nearest the workload's ``lr``, the smaller
    one of two as near."""
    from scipy.stats import gmean

    sign = -1.0 if mode == "max" else 1.0

    def key(rate: float) -> tuple:
        cells = by_rate[rate]
        times = [c.get("sim_s") for c in cells]
        reached = sum(t is not None and t > 0 for t in times)
        t = float(gmean(times)) if reached == len(cells) else math.inf
        bests = [c.get("best") for c in cells]
        score = sign * sum(bests) / len(bests) if all(isinstance(b, (int, float)) and math.isfinite(b)
                                                      for b in bests) else math.inf
        diverged = sum(c.get("status") == "diverged" for c in cells)
        return (-reached, t, diverged, score, abs(math.log(rate / lr)), rate)

    return sorted(by_rate, key=key)


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
    """Finds or runs the cells, rung by rung; ``state()`` is what grid.json holds (partial until every
    final cell is in).

    ``rates``: the learning rates every level tries (one: the same rate for every level, no halving).
    The final cells, at each level's chosen rate and the full budget, are ``cells[key(R, level, seed)]``;
    every rung's cells and the rates it kept are in ``trials[f"{R:.6g}|{level}"]``."""

    def __init__(self, base_overrides: List[str], columns: List[dict], levels: List[L.Level], seeds: List[int],
                 out: Path, roots: Sequence[Path] = (), max_runs: Optional[int] = None, log=print,
                 meta: Optional[dict] = None, rates: Optional[Sequence[float]] = None, eta: int = ETA):
        self.base, self.columns, self.levels, self.seeds = list(base_overrides), columns, levels, list(seeds)
        self.out, self.max_runs, self.log, self.meta = Path(out), max_runs, log, dict(meta or {})
        self.known = index_runs([self.out, *roots])
        self._first: Dict[tuple, object] = {}
        self._cells: Dict[tuple, dict] = {}
        self._amounts: Dict[tuple, float] = {}
        self.lr = float(self._compose(columns[0], levels[0]).optim.lr)  # the workload's
        self.rates = sorted(float(r) for r in rates) if rates else [self.lr]
        self.eta, self.rungs = eta, rungs(len(self.rates), eta)
        self.cells: Dict[str, dict] = {}  # "R|level|seed" -> read_cell(...) + config facts: the final rung
        self.trials: Dict[str, dict] = {}  # "R|level" -> the rates tried, each rung's cells, the rate chosen
        self.ran, self.reused, self.spent_s = 0, 0, 0.0
        self.units = [(c, lv) for c in columns for lv in levels]

    @staticmethod
    def key(R: float, level: str, seed: int) -> str:
        return f"{R:.6g}|{level}|{seed}"

    def rung_seeds(self, rung: int) -> List[int]:
        """The seeds of a rung: the rates are ranked on the first seed, the last rung runs every seed."""
        return self.seeds if rung == len(self.rungs) - 1 else self.seeds[:1]

    def total(self) -> int:
        """Runs of the whole pilot: per level and R, each rung's number of rates times its seeds."""
        return len(self.units) * sum(c * len(self.rung_seeds(k)) for k, (c, _) in enumerate(self.rungs))

    def _compose(self, col: dict, level: L.Level):
        """A unit's config, composed once (composing is the slow part); cells set the seed, the rate and
        the budget on copies (as overrides they give the same config)."""
        k = (col["R"], level.name)
        if k not in self._first:
            self._first[k] = compose(cell_overrides(self.base, col, level, self.seeds[0]))
        return self._first[k]

    def _cell(self, col: dict, level: L.Level, rung: int, lr: float, seed: int) -> dict:
        """One cell's config and hash (made once), and where it ran if it did."""
        k = (col["R"], level.name, rung, lr, seed)
        if k not in self._cells:
            self._cells[k] = self._make_cell(col, level, rung, lr, seed)
        p = self._cells[k]
        p["done"] = self.known.get(p["hash"])
        return p

    def _make_cell(self, col: dict, level: L.Level, rung: int, lr: float, seed: int) -> dict:
        import copy

        from ..config import config_hash, resolved

        first = self._compose(col, level)
        frac = self.rungs[rung][1]
        sim_s = float(f"{col['sim_s'] * frac:.12g}")
        cfg = copy.deepcopy(first)
        cfg.seed, cfg.optim.lr, cfg.budget.sim_s = seed, lr, sim_s
        h = config_hash(resolved(cfg))
        return {"col": col, "level": level, "seed": seed, "lr": lr, "rung": rung, "fraction": frac,
                "final": rung == len(self.rungs) - 1, "cfg": cfg, "hash": h, "per_step": loads_per_step(first),
                "overrides": cell_overrides(self.base, col, level, seed, lr, sim_s),
                "amount": self._amount(col, level, first)}

    def _amount(self, col: dict, level: L.Level, cfg) -> float:
        k = (col["R"], level.name)
        if k not in self._amounts:
            self._amounts[k] = L.amount(cfg, col["R"])
        return self._amounts[k]

    def missing(self) -> int:
        """Runs still to make: the cells not found, and every cell of a rung that waits on one."""
        return self._walk(run=False)

    def _walk(self, run: bool, on_cell: Optional[Callable[[dict], None]] = None) -> int:
        """Plain SGD first (if it cannot reach the target within the budget, nothing else is worth running),
        then the other levels; rung by rung, seed by seed within a rung (a partial grid already compares
        every level). Without ``run``, only counts the runs still to make."""
        todo = 0
        mode = self.meta.get("target", {}).get("mode", "max")
        sgd = [i for i, (_, lv) in enumerate(self.units) if lv.name == "none"]
        for group in (sgd, [i for i in range(len(self.units)) if i not in sgd]):
            alive = {i: list(self.rates) for i in group}
            blocked = set()  # units waiting on a cell not made yet (counting only)
            for rung, (count, _) in enumerate(self.rungs):
                got: Dict[int, Dict[float, List[dict]]] = {i: {} for i in group}
                seeds = self.rung_seeds(rung)
                for seed in seeds:
                    for i in group:
                        for lr in ([] if i in blocked else alive[i]):
                            p = self._cell(*self.units[i], rung, lr, seed)
                            if p["done"] is None and not run:
                                todo += 1
                                continue
                            got[i].setdefault(lr, []).append(self._read(p, on_cell) if run else
                                                             read_cell(p["done"], p["per_step"]))
                for i in group:
                    if i in blocked:
                        todo += count * len(seeds)
                    elif any(len(got[i].get(lr, [])) < len(seeds) for lr in alive[i]):
                        blocked.add(i)
                    else:
                        order = rank_rates(got[i], mode, self.lr)
                        if run:
                            self._trial(self.units[i], rung, got[i], order)
                        if rung + 1 < len(self.rungs):
                            alive[i] = order[:self.rungs[rung + 1][0]]
        return todo

    def _read(self, p: dict, on_cell) -> dict:
        from ..runs import run_once
        from .measure import starting

        run_dir = p["done"]
        what = f"{p['level'].name} at lr {p['lr']:g} (seed {p['seed']})"
        if run_dir is None:
            if self.max_runs is not None and self.ran >= self.max_runs:
                self.save()
                raise ConfigError(
                    f"the pilot budget is too small for the grid: --max-runs {self.max_runs} allowed {self.ran} new "
                    f"runs in this call and {self.missing()} runs are still missing. The {len(self.cells)} finished "
                    f"cells are kept in {self.out} (grid.json holds the partial grid): run the same command again to "
                    "continue where it stopped, or raise --max-runs, or give fewer --levels / --seeds / --rates.")
            budget = "" if p["final"] else f"-{p['fraction']:.3g}budget"
            run_dir = self.out / "runs" / (f"R{p['col']['R']:.3g}-{p['level'].slug}-lr{p['lr']:g}{budget}"
                                           f"-seed{p['seed']}-{p['hash'][:8]}")
            part = "" if p["final"] else f" for {p['fraction']:.3g} of the budget (rung {p['rung'] + 1})"
            self.log(f"advise: running {what}{part} at R={p['col']['R']:.3g} -> {run_dir}")
            t = time.perf_counter()
            with starting(f"the run of {what}"):
                run_once(p["cfg"], run_dir)
            self.spent_s += time.perf_counter() - t
            self.ran += 1
            self.known[p["hash"]] = run_dir
        else:
            self.reused += 1
        c = read_cell(run_dir, p["per_step"])
        c.update(R=p["col"]["R"], level=p["level"].name, seed=p["seed"], amount=p["amount"], hash=p["hash"],
                 lr=p["lr"], rung=p["rung"], fraction=p["fraction"], final=p["final"])
        if p["final"]:
            self.cells[self.key(p["col"]["R"], p["level"].name, p["seed"])] = c
        if on_cell is not None:
            on_cell(c)
        return c

    def _trial(self, unit: tuple, rung: int, by_rate: Dict[float, List[dict]], order: List[float]) -> None:
        """Records one finished rung of one level: its cells by rate, best rate first, and those it keeps."""
        col, level = unit
        t = self.trials.setdefault(f"{col['R']:.6g}|{level.name}", {"tried": list(self.rates), "rungs": [],
                                                                   "chosen": None})
        keep = self.rungs[rung + 1][0] if rung + 1 < len(self.rungs) else 1
        del t["rungs"][rung:]
        t["rungs"].append({"fraction": self.rungs[rung][1], "sim_s": col["sim_s"] * self.rungs[rung][1],
                           "rates": order, "kept": order[:keep],
                           "cells": {f"{lr:g}": [{k: c.get(k) for k in ("seed", "sim_s", "best", "status", "dir")}
                                                 for c in cs] for lr, cs in by_rate.items()}})
        if rung == len(self.rungs) - 1:
            t["chosen"] = order[0]

    def run(self, on_cell: Optional[Callable[[dict], None]] = None) -> None:
        self._walk(run=True, on_cell=on_cell)
        self.save()

    def state(self) -> dict:
        return {**self.meta, "columns": [{k: v for k, v in c.items()} for c in self.columns],
                "levels": [{"name": lv.name, "overrides": list(lv.overrides)} for lv in self.levels],
                "seeds": self.seeds, "base_overrides": self.base, "cells": self.cells,
                "lr": self.lr, "rates": self.rates, "same_rate": len(self.rates) == 1, "eta": self.eta,
                "rungs": [list(r) for r in self.rungs], "trials": self.trials,
                "complete": len(self.cells) == len(self.units) * len(self.seeds), "ran": self.ran,
                "reused": self.reused, "spent_s": self.spent_s}

    def save(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        write_json(self.out / "grid.json", self.state())
