"""The measured hardware profile: where it lives, how it is written and found, and which workload
it belongs to.

``echo-advise measure`` writes ``conf/hardware/<name>.yaml`` under the working directory (``measured``
by default; git-ignored in a checkout), never into the installed package: that conf/ is on Hydra's search
path (``runner.config.USER_CONF_DIR``), so any later run from the same directory selects it as
``hardware=measured``. With ``--profile-dir DIR`` it writes ``DIR/hardware/<name>.yaml`` instead,
selected with ``hydra.searchpath=[conf,file://DIR] hardware=<name>`` (conf: the working directory's).
Its numbers are the simulated clock's (``runner.simclock``); ``info`` says where they came from:
the machine, the workload, the date, the command and the spread of every measurement.

A profile belongs to one workload: the data set and its pipeline (batch size, workers), the model,
the optimizer, the device and the launcher. ``workload_key`` is the part of a resolved config that
decides its timings, and the profile stores its hash; the advisor refuses to use a profile measured
for another workload.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from omegaconf import OmegaConf

from ..config import CONF_DIR, USER_CONF_DIR
from ..errors import ConfigError
# The workload key, hash and stamp check live below the schema (which checks the stamp); named here too
# for the advisor's callers.
from ..workload import WORKLOAD_GROUPS, check_stamp, describe, workload_hash, workload_key  # noqa: F401

DEFAULT_NAME = "measured"


def path(name: str = DEFAULT_NAME, directory: Optional[str] = None) -> Path:
    """Where the profile ``name`` is written and read: DIR/hardware/ with --profile-dir, else conf/hardware/
    under the working directory (resolved now: the directory the command runs in)."""
    base = Path(directory).expanduser() if directory else Path.cwd() / USER_CONF_DIR
    return base / "hardware" / f"{name}.yaml"


def missing(name: str = DEFAULT_NAME, directory: Optional[str] = None) -> str:
    """The paragraph for a profile that is not there."""
    return (f"there is no measured hardware profile {name!r}: {path(name, directory)} does not exist. "
            f"`echo-advise measure <your overrides>` measures this machine on your workload (data set, model, "
            f"batch size, workers, device) and writes it there{' (--name ' + name + ')' if name != DEFAULT_NAME else ''}; "
            f"then select it with hardware={name}. Or choose a profile that ships with echo-run (hardware=gpu_nvme, "
            "gpu_network_storage, h100_few_cpus, cluster_ethernet, or hardware=ratio hardware.ratio=R).")


def missing_selected(argv) -> Optional[str]:
    """For echo-run's command line: the paragraph of ``missing`` when it selects ``hardware=NAME`` and no
    NAME.yaml is shipped or under ./conf/hardware/ (None otherwise, and when a hydra.searchpath or a
    --config-dir may hold it elsewhere)."""
    args = list(argv)
    if any(a.startswith(("hydra.searchpath", "--config-dir", "-cd")) for a in args):
        return None
    for a in args:
        key, _, val = a.partition("=")
        shipped = Path(CONF_DIR) / "hardware" / f"{val}.yaml"
        if key == "hardware" and val and "," not in val and not shipped.is_file() and not path(val).is_file():
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
                          "directory you can write (then select the profile with hydra.searchpath=[conf,file://DIR] "
                          f"hardware={name}).") from None
    return p


def load(name: str = DEFAULT_NAME, directory: Optional[str] = None) -> Optional[dict]:
    p = path(name, directory)
    if not p.is_file():
        return None
    return OmegaConf.to_container(OmegaConf.load(p), resolve=True)


def searchpath(directory: Optional[str]) -> list:
    """The override that lets Hydra find a profile written with --profile-dir. It replaces config.yaml's
    search path, so it names the working directory's conf/ again (the user's own groups stay selectable)."""
    return [f"hydra.searchpath=[{USER_CONF_DIR},file://{Path(directory).expanduser().resolve()}]"] if directory else []


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
