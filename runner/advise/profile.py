"""The measured hardware profile: where it lives, how it is written and found, and which workload
it belongs to.

``echo-advise measure`` writes ``conf/hardware/<name>.yaml`` (``measured`` by default; git-ignored),
so that any later run selects it as ``hardware=measured``. With ``--profile-dir DIR`` it writes
``DIR/hardware/<name>.yaml`` instead, selected with ``hydra.searchpath=[file://DIR] hardware=<name>``.
Its numbers are the simulated clock's (``runner.simclock``); ``info`` says where they came from:
the machine, the workload, the date, the command and the spread of every measurement.

A profile belongs to one workload: the data set and its pipeline (batch size, workers), the model,
the optimizer, the device and the launcher. ``workload_key`` is the part of a resolved config that
decides its timings, and the profile stores its hash; the advisor refuses to use a profile measured
for another workload.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Optional

from omegaconf import DictConfig, OmegaConf

from ..config import CONF_DIR
from ..errors import ConfigError

DEFAULT_NAME = "measured"


def path(name: str = DEFAULT_NAME, directory: Optional[str] = None) -> Path:
    base = Path(directory).expanduser() if directory else Path(CONF_DIR)
    return base / "hardware" / f"{name}.yaml"


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


WORKLOAD_GROUPS = ("data", "model", "pipeline", "optim", "train", "launcher", "comm")


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


def missing(name: str = DEFAULT_NAME, directory: Optional[str] = None) -> str:
    """The paragraph for a profile that is not there."""
    return (f"there is no measured hardware profile {name!r}: {path(name, directory)} does not exist. "
            f"`echo-advise measure <your overrides>` measures this machine on your workload (data set, model, "
            f"batch size, workers, device) and writes it there{' (--name ' + name + ')' if name != DEFAULT_NAME else ''}; "
            f"then select it with hardware={name}. Or choose a profile that ships with echo-run (hardware=gpu_nvme, "
            "gpu_network_storage, h100_few_cpus, cluster_ethernet, or hardware=ratio hardware.ratio=R).")


def missing_selected(argv) -> Optional[str]:
    """For echo-run's command line: the paragraph of ``missing`` when it selects ``hardware=NAME`` and no
    conf/hardware/NAME.yaml exists (None otherwise, and when a hydra.searchpath may hold it elsewhere)."""
    args = list(argv)
    if any(a.startswith("hydra.searchpath") for a in args):
        return None
    for a in args:
        key, _, val = a.partition("=")
        if key == "hardware" and val and "," not in val and not path(val).is_file():
            return missing(val)
    return None


def write(profile: dict, name: str = DEFAULT_NAME, directory: Optional[str] = None) -> Path:
    """Write the profile (atomically: a run composing it meanwhile reads the old or the new one)."""
    p = path(name, directory)
    info = profile.get("info") or {}
    head = [f"# Measured by `echo-advise measure` on {info.get('machine', {}).get('host', '?')} at {info.get('date', '?')}",
            f"# for the workload: {info.get('workload', '?')}.",
            f"# R = batch load time / step time = {info.get('R', {}).get('value', float('nan')):.3g}. Select it with "
            f"hardware={name}; measure again after changing the workload (the advisor checks info.workload_hash).",
            "# Written by the advisor: edits are overwritten by the next measurement.", ""]
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(".yaml.tmp")
        tmp.write_text("\n".join(head) + OmegaConf.to_yaml(OmegaConf.create(profile)))
        tmp.replace(p)
    except OSError as e:
        raise ConfigError(f"cannot write the hardware profile {p}: {e.strerror or e}. Give --profile-dir DIR, a "
                          "directory you can write (then select the profile with hydra.searchpath=[file://DIR] "
                          f"hardware={name}).") from None
    return p


def load(name: str = DEFAULT_NAME, directory: Optional[str] = None) -> Optional[dict]:
    p = path(name, directory)
    if not p.is_file():
        return None
    return OmegaConf.to_container(OmegaConf.load(p), resolve=True)


def searchpath(directory: Optional[str]) -> list:
    """The override that lets Hydra find a profile written with --profile-dir."""
    return [f"hydra.searchpath=[file://{Path(directory).expanduser().resolve()}]"] if directory else []


def matches(profile: Optional[dict], resolved: dict) -> bool:
    return bool(profile) and (profile.get("info") or {}).get("workload_hash") == workload_hash(resolved)


def require(name: str, directory: Optional[str], resolved: dict) -> dict:
    """The profile ``name`` measured for this workload; ConfigError when it is missing or another's."""
    prof = load(name, directory)
    if prof is None:
        raise ConfigError(missing(name, directory))
    if not matches(prof, resolved):
        theirs = (prof.get("info") or {}).get("workload", "an unknown workload (no info.workload_hash)")
        raise ConfigError(
            f"the hardware profile {path(name, directory)} was measured for another workload ({theirs}), not "
            f"for this one ({describe(resolved)}): its times do not apply. Measure this workload with "
            f"`echo-advise measure <the same overrides>` (or give another --name to keep both profiles).")
    return prof
