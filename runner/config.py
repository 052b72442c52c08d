"""The one place that knows where the config lives and how it is composed, checked and hashed: the
CLI, the advisor, the benchmarks and the tests all come through here."""
from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Iterable

from omegaconf import DictConfig, OmegaConf

from .schema import check_overrides, register, validate


def _conf_dir() -> str:
    """The shipped configs: runner/conf/ in an installed package (pyproject.toml ships the repository's
    top-level conf/ as the package ``runner.conf``), conf/ beside the package in a checkout, editable
    install or not. Decided by the files beside this module, so that a second checkout run with another
    checkout's editable install still reads its own conf/."""
    here = Path(__file__).resolve().parent
    for d in (here / "conf", here.parent / "conf"):
        if (d / "config.yaml").is_file():
            return str(d)
    raise RuntimeError(f"echo-run's configs are missing: neither {here / 'conf'} nor {here.parent / 'conf'} holds "
                       "config.yaml. Reinstall echo-run (pip install echo-run, or pip install -e . in a checkout).")


CONF_DIR = _conf_dir()
# The user's own config groups and measured hardware profiles: conf/ under the working directory, on
# Hydra's search path through conf/config.yaml's hydra.searchpath (after the shipped configs, so it adds
# options and does not replace shipped ones). ``echo-advise measure`` writes its profiles there.
USER_CONF_DIR = "conf"
# Most working directories have no conf/: that is the usual case, not a warning (Hydra warns about every
# search path entry that is not a directory; any other missing one still warns).
warnings.filterwarnings("ignore", message=rf"provider=hydra\.searchpath in (main|command-line), path={USER_CONF_DIR} is "
                        "not available")

# Options that change how a run is watched or launched, not what it computes.
_NOT_HASHED = ("resume", "logger", "name", "checkpoint")
_NOT_HASHED_LAUNCHER = ("dry_run", "max_restarts", "rdzv_endpoint", "rdzv_id", "rdzv_backend", "node_rank")
_NOT_HASHED_TRAIN = ("check_every",)
_NOT_HASHED_BUDGET = ("stop_at",)  # where a staged run pauses: its records are a prefix of the whole run's

register()


def compose(overrides: Iterable[str] = (), check: bool = True) -> DictConfig:
    """The config ``echo-run <overrides>`` would run, validated (ConfigError when it is refused)."""
    from hydra import compose as hydra_compose, initialize_config_dir

    overrides = list(overrides)
    check_overrides(overrides)  # a typo in a choice: the project's paragraph, not Hydra's composition error
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = hydra_compose("config", overrides=list(overrides))
    if check:
        validate(cfg)
    return cfg


def resolved(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)  # the choices as their strings


def config_hash(resolved: dict) -> str:
    """What a run computes, in 16 hex digits: equal hashes mean equal records (wall clock aside)."""
    d = {k: v for k, v in resolved.items() if k not in _NOT_HASHED}
    if "launcher" in d:
        d["launcher"] = {k: v for k, v in d["launcher"].items() if k not in _NOT_HASHED_LAUNCHER}
    if "train" in d:
        d["train"] = {k: v for k, v in d["train"].items() if k not in _NOT_HASHED_TRAIN}
    if "budget" in d:
        d["budget"] = {k: v for k, v in d["budget"].items() if k not in _NOT_HASHED_BUDGET}
    if isinstance(d.get("eval"), dict) and d["eval"].get("subset") is None:
        # unset, it changes nothing: runs from before the key existed keep their hash
        d["eval"] = {k: v for k, v in d["eval"].items() if k != "subset"}
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def import_from_cwd() -> None:
    """A user's own ``_target_`` (model._target_=mywork.Net) lives beside the command, as with
    ``python -m``; a console script's sys.path starts at its own directory instead."""
    import os
    import sys

    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


def build(node: DictConfig, keys=None, **runtime):
    """Instantiate a component node: its ``_target_`` called with its arguments (the runner's own
    ``keys`` left out) and the objects the runner passes (``runtime``). Whatever the target raises
    (or its module, while it is imported) reaches the caller as itself, with its traceback: a
    ConfigError the CLI prints and exits 2 with, any other error exits 1 with the traceback."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    from .errors import ConfigError, unwrapped
    from .schema import TargetNotFound, locate, target_args

    try:
        locate(node._target_)  # imported here, not inside Hydra, which would wrap an import error
    except TargetNotFound as e:
        raise ConfigError(f"_target_={node._target_!r} cannot be imported ({e}): check the module path of "
                          "your own class (importable from the current directory or PYTHONPATH).") from e
    spec = {"_target_": node._target_, **target_args(node, keys)}
    if node.get("_partial_"):
        spec["_partial_"] = True
    try:
        return instantiate(OmegaConf.create(spec), **runtime)
    except InstantiationException as e:
        raise unwrapped(e)  # the target's own error, ConfigError (exit 2) or not (exit 1, its traceback)
