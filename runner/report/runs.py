"""Finding run directories, reading them into ``Run``s, and grouping runs.

A run directory holds ``.hydra/config.yaml`` and ``metrics.jsonl`` (``summary.json`` once it ended).
A run's group label is its method (``summary.json``'s ``method``) with the world size appended when
it trained data-parallel (``cosine+on_load ×2``), so that single-process and data-parallel runs
never share a curve or a table row.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import yaml

from ..errors import ConfigError
from ..metrics import read_jsonl
from ..summary import method_label, model_label, reached

CLOCKS = ("example_loads", "step", "wall_s", "sim_s")  # the clocks a time to target is read on
# libyaml's safe loader where PyYAML was built with it: a results tree holds hundreds of configs, and
# the pure-Python loader spent most of a verdict's time parsing them.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class ReportError(ConfigError):
    """Input the user can fix (no runs, a metric the runs lack); printed as one paragraph, exit 2."""


def finite(v) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def cfg_get(config: dict, key: str, default=None):
    """A dotted key of a resolved config (``hardware.ratio``); ``default`` where a level is missing."""
    node = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


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
    def world_size(self) -> int:
        """Processes that trained together: summary.json, else the records, else the launcher."""
        ws = (self.summary or {}).get("world_size")
        if ws is None and self.records:
            ws = self.records[-1].get("world_size")
        if ws is None:
            la = self.config.get("launcher", {}) or {}
            nnodes = str(la.get("nnodes", 1))
            ws = int(la.get("nproc_per_node", 1) or 1) * (int(nnodes) if nnodes.isdigit() else 1)
        return int(ws)

    @property
    def label(self) -> str:
        """The method as shown in figures and tables: ``sgd``, ``cosine+on_load ×2``."""
        return self.method if self.world_size == 1 else f"{self.method} ×{self.world_size}"

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
        return (self.summary or {}).get("model") or model_label(self.config["model"])

    @property
    def budget(self) -> str:
        """The budget the run was given; budget.stop_at, where a stage of it paused, is not part of it."""
        b = self.config.get("budget", {})
        return ", ".join(f"{k}={v}" for k, v in b.items() if v is not None and k != "stop_at")

    @property
    def hardware(self) -> str:
        return cfg_get(self.config, "hardware.name", "none") or "none"

    @property
    def reuse(self) -> Optional[float]:
        return reuses(self)

    @property
    def status(self) -> str:
        """complete | diverged | stopped (budget.stop_at: a prefix of the run, continued later) |
        incomplete (no summary yet: running, or stopped by a signal before the end). Only a complete
        run is a finished one: tables count a stopped run as unfinished."""
        if self.summary is None:
            return "diverged" if any(not finite(v) for r in self.records[-1:] for v in r.values()
                                     if isinstance(v, (str, float))) else "incomplete"
        return self.summary.get("status", "incomplete")

    def final(self, metric: str) -> float:
        """The metric at the run's end; NaN for a diverged run (its last value means nothing) and for
        a stopped one (it has not reached its end)."""
        if self.status in ("diverged", "stopped") or not self.records:
            return math.nan
        v = self.records[-1].get(metric)
        return float(v) if finite(v) else math.nan

    def get(self, key: str, default=None):
        """A config key (dotted) or one of the run's labels (method, label, world_size, seed, ...)."""
        if key in _LABELS:
            return getattr(self, key)
        return cfg_get(self.config, key, default)


_LABELS = ("method", "label", "world_size", "seed", "lr", "dataset", "model", "budget", "hardware", "reuse",
           "status")


def find_runs(paths) -> list:
    runs, seen = [], set()
    for p in map(Path, paths):
        if not p.exists():
            raise ReportError(f"{p} does not exist. Give run directories or directories above them "
                              "(a multirun's sweep directory, results/).")
        for cfg_file in sorted(p.rglob(".hydra/config.yaml")):
            d = cfg_file.parent.parent
            if not (d / "metrics.jsonl").exists() or d.resolve() in seen:
                continue  # a run that has not written its first record yet, or one given twice
            seen.add(d.resolve())
            summary = d / "summary.json"
            runs.append(Run(d, yaml.load(cfg_file.read_text(), Loader=SAFE_LOADER), read_jsonl(d / "metrics.jsonl"),
                            _read_json(summary) if summary.exists() else None))
    if not runs:
        raise ReportError("no runs were found under " + ", ".join(map(str, paths)) + ": a run directory "
                          "holds .hydra/config.yaml and metrics.jsonl (echo-run writes both). Point "
                          "echo-report at a run directory, a multirun's sweep directory, or results/.")
    return runs


def _read_json(path: Path) -> Optional[dict]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def group(runs, *keys) -> dict:
    """{(value of each key): [runs]}, sorted by the keys (numbers before text)."""
    out: dict = {}
    for r in runs:
        out.setdefault(tuple(r.get(k) for k in keys), []).append(r)
    return dict(sorted(out.items(), key=lambda kv: tuple(map(_sort_key, kv[0]))))


def _sort_key(v):
    return (0, v, "") if isinstance(v, (int, float)) else (1, 0, str(v))


def default_metric(runs) -> str:
    return "test_ppl" if any(r.config["data"].get("task") == "language" for r in runs) else "test_acc"


def mode_of(metric: str) -> str:
    return "max" if metric.endswith("acc") else "min"


def reuses(run: Run) -> Optional[float]:
    """Expected steps per fresh batch, 1/p, for Algorithm 1 with a constant p (SGD: 1); None for
    the other methods (their reuse changes over the run)."""
    e, s = run.config["echo"], run.config["schedule"]
    data_parallel = run.world_size != 1 or run.config.get("comm", {}).get("name", "none") != "none"
    if e["policy"] != "stochastic" or data_parallel:
        return None
    if s["name"] == "none":
        return 1.0
    return 1.0 / s["p"] if s["name"] == "constant" else None


def target_of(runs, value: Optional[float] = None, metric: Optional[str] = None) -> Optional[dict]:
    """The runs' target {metric, value, mode}, ``value`` (and ``metric``) overriding theirs; None
    when there is none. Runs that disagree on their target cannot share a time to target."""
    ts = {tuple(sorted((r.config.get("target") or {}).items())) for r in runs}
    if value is None and len(ts) > 1:
        raise ReportError("these runs have different targets (" + "; ".join(str(dict(t)) for t in ts)
                          + "): a time to target compares only runs with one target. Give one with "
                          "--target VALUE, or report the runs apart.")
    t = dict(next(iter(ts))) if ts else {}
    m = metric or t.get("metric") or default_metric(runs)
    v = value if value is not None else t.get("value")
    if v is None:
        return None
    mode = t.get("mode") if m == t.get("metric") and t.get("mode") else mode_of(m)
    return {"metric": m, "value": float(v), "mode": mode}


def to_target(run: Run, metric: str, value: float, mode: str) -> Optional[dict]:
    """The run's first record at the target (all its clocks and counters: example_loads, step,
    wall_s, sim_s, comm_rounds, ...); None if it never got there or diverged."""
    if run.status == "diverged":
        return None
    return next((dict(r) for r in run.records if reached(r.get(metric), value, mode)), None)


def series(run: Run, x: str, y: str) -> tuple:
    pts = [(float(r[x]), float(r[y])) for r in run.records if finite(r.get(x)) and finite(r.get(y))]
    pts.sort()
    return np.array([p[0] for p in pts]), np.array([p[1] for p in pts])


def last_x(run: Run, x: str, y: str) -> float:
    """The largest ``x`` at which the run recorded ``y``; NaN if it never did."""
    sx, _ = series(run, x, y)
    return float(sx[-1]) if len(sx) else math.nan


def value_at(run: Run, x: str, y: str, at: float) -> float:
    """``y`` linearly interpolated at ``x = at`` between the run's records (NaN outside them)."""
    sx, sy = series(run, x, y)
    if not len(sx) or at < sx[0] or at > sx[-1]:
        return math.nan
    return float(np.interp(at, sx, sy))
