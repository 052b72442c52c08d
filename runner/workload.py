"""Which workload a run is, as its timings see it, and the check that a measured hardware profile
belongs to it.

A measured profile (``echo-advise measure``) stores ``info.workload_hash``; ``validate`` refuses a
run of another workload that selects it (its step and load times would make ``sim_s`` wrong). The
check lives here, below the schema, so that validating a config never loads the advisor.
"""
from __future__ import annotations

import hashlib
import json

from omegaconf import DictConfig, OmegaConf

from .errors import ConfigError

# The config groups that decide a run's timings (what ``workload_key`` reads).
WORKLOAD_GROUPS = ("data", "model", "pipeline", "optim", "train", "launcher", "comm")


def workload_key(resolved: dict) -> dict:
    """What decides a run's timings: the data and pipeline, the model, the optimizer's class, the
    device and threads, the launcher's ranks (not the seed, the echo level, the budget or the target)."""
    la = resolved.get("launcher", {})
    t = resolved.get("train", {})
    o = resolved.get("optim", {})
    return {"data": resolved["data"], "model": resolved["model"], "pipeline": resolved.get("pipeline"),
            "optim": {"_target_": o.get("_target_"), "name": o.get("name")},
            "train": {k: t.get(k) for k in ("device", "amp", "compile", "channels_last", "threads")},
            "launcher": {k: la.get(k) for k in ("name", "nproc_per_node", "nnodes", "backend")},
            "comm": (resolved.get("comm") or {}).get("_target_")}


def workload_hash(resolved: dict) -> str:
    return hashlib.sha256(json.dumps(workload_key(resolved), sort_keys=True, default=str).encode()).hexdigest()[:12]


def describe(resolved: dict) -> str:
    """One line naming the workload: data set, model, batch, workers, device, ranks."""
    d, m, la = resolved["data"], resolved["model"], resolved["launcher"]
    model = str(m.get("_target_", "?")).rsplit(".", 1)[-1] + (f"({m['name']})" if m.get("name") else "")
    ranks = f", {la['nproc_per_node']} ranks" if la.get("name") == "torchrun" else ""
    dev = resolved["train"].get("device")
    if dev == "auto":
        import torch

        dev = "cuda" if torch.cuda.is_available() else "cpu"
    return f"{d.get('name')}, {model}, batch {d.get('batch_size')}, {d.get('workers')} workers, {dev}{ranks}"


def check_stamp(cfg) -> None:
    """A measured profile (``info.workload_hash``) selected for a run of another workload: ConfigError.
    Its step and load times are another model's and pipeline's, so the run's sim_s would be wrong."""
    info = cfg.hardware.get("info")
    stamp = info.get("workload_hash") if isinstance(info, DictConfig) else None
    if stamp is None:
        return
    res = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in WORKLOAD_GROUPS if k in cfg}
    if workload_hash(res) != stamp:
        raise ConfigError(
            f"hardware={cfg.hardware.name} was measured for another workload ({info.get('workload', '?')}), not "
            f"for this run's ({describe(res)}): its step and load times would make sim_s wrong. Measure this "
            f"workload with `echo-advise measure <your overrides> --name NEW` and select hardware=NEW, or, to "
            f"use these times for this workload anyway, add hardware.info=null.")
