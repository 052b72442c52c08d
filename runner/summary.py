"""The end-of-run summary: final metrics, time to target, and what produced them."""
from __future__ import annotations

import platform
import subprocess
from pathlib import Path
from typing import Optional

from .metrics import read_jsonl


def git_revision() -> Optional[str]:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict:
    import torch
    import transformers

    v = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__}
    try:
        import torchvision

        v["torchvision"] = torchvision.__version__
    except ImportError:
        pass
    v["cuda"] = torch.version.cuda if torch.cuda.is_available() else None
    v["device"] = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"
    return v


def reached(value, target: float, mode: str) -> bool:
    if not isinstance(value, (int, float)):
        return False
    return value >= target if mode == "max" else value <= target


def time_to_target(records: list, metric: str, target: Optional[float], mode: str) -> Optional[dict]:
    """The clocks of the first record whose ``metric`` reached ``target`` (None if none did)."""
    if target is None:
        return None
    for r in records:
        if reached(r.get(metric), target, mode):
            return {k: r.get(k) for k in ("example_loads", "step", "epoch", "wall_s", "sim_s")}
    return None


def make_summary(cfg, resolved: dict, run_dir: Path, status: str, chash: str, world: int, comm: str) -> dict:
    records = read_jsonl(Path(run_dir) / "metrics.jsonl")
    final = records[-1] if records else {}
    t = cfg.target
    return {
        "status": status,
        "final": final,
        "target": {"metric": t.metric, "value": t.value, "mode": t.mode,
                   "reached": time_to_target(records, t.metric, t.value, t.mode)},
        "records": len(records),
        "config_hash": chash,
        "method": method_label(resolved, comm),
        "model": model_label(resolved["model"]),
        "world_size": world,
        "git_revision": git_revision(),
        "versions": versions(),
    }


def method_label(resolved: dict, comm: Optional[str] = None) -> str:
    """A short name for the echoing and communication method, used to group runs in reports;
    ``comm`` is the strategy that ran (its ``name``), by default the config's."""
    e, s = resolved["echo"], resolved["schedule"]
    if e["policy"] == "stochastic":
        label = "sgd" if s["name"] == "none" else s["name"] if s["name"] != "constant" else f"constant(p={s['p']})"
    elif e["policy"] in ("batch", "example"):
        label = f"{e['policy']}(e={e['factor']})"
    else:
        label = "adaptive"
    if label != "sgd" and (resolved.get("data") or {}).get("augment_on_echo"):
        label += "+reaug"  # echoed batches re-augmented on the device (Choi et al.'s "echoing before augmentation")
    comm = comm or resolved.get("comm", {}).get("name", "none")
    if comm != "none":
        label += f"+{comm}"
        outer = (resolved.get("comm") or {}).get("outer_optim")
        if outer:
            label += f"+{outer}"  # DiLoCo: an outer optimizer on the averaged pseudo-gradient
    return label


def model_label(m: dict) -> str:
    """A short name for the model config ``m``: its ``name`` (torchvision, timm), the last part of
    ``name_or_path`` or ``config.model_type`` (transformers), else its builder's name, with a size
    where one builder serves several (mobilenet_v3-small, gpt2-tiny)."""
    if m.get("name"):
        return str(m["name"])
    if m.get("name_or_path"):
        return Path(str(m["name_or_path"])).name
    if isinstance(m.get("config"), dict) and m["config"].get("model_type"):
        return str(m["config"]["model_type"])
    name = str(m["_target_"]).rsplit(".", 1)[-1]
    return f"{name}-{m['size']}" if m.get("size") else name
