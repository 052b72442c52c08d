"""The typed schema of every config group, and ``validate``: every range and choice, checked once,
before anything is created, so that every bad value is refused in one place with one sentence.

Two kinds of group:
- plain groups (``echo``, ``budget``, ``eval``, ``target``, ``pipeline``, ``hardware``, ``launcher``,
  ``logger``, ``train``, ``checkpoint``) are dataclasses: Hydra checks their keys and types while
  composing;
- component groups (``data``, ``model``, ``optim``, ``schedule``, ``comm`` and ``comm.schedule``)
  name what builds them with ``_target_`` (``hydra.utils.instantiate``), so that a user's own class
  plugs in without editing ``runner/``. Their keys are the runner's own (the ``*Keys`` dataclasses
  below, typed and defaulted here) plus the arguments of the target, which ``validate`` checks
  against the target's signature.
"""
from __future__ import annotations

import inspect
import math
import os
import re
from dataclasses import dataclass, field, fields, is_dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Dict, List, Optional, get_type_hints

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from .errors import ConfigError
from .workload import check_stamp


# ------------------------------------------------------------------------------------ choices
class Choice(str, Enum):
    """One of a key's fixed strings. OmegaConf refuses any other value of an Enum-typed field while it
    composes or merges; a member compares equal to its string and prints as it, so code reads it as one."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


def choice(name: str, *values: str):
    """An Enum of ``values``, each member named as its string (how OmegaConf reads a value)."""
    return Choice(name, [(v, v) for v in values], module=__name__, qualname=name)


EchoPolicy = choice("EchoPolicy", "stochastic", "batch", "example", "adaptive")
ReadyFrom = choice("ReadyFrom", "auto", "clock", "pipeline")
LrSchedule = choice("LrSchedule", "constant", "cosine", "linear", "step")
TargetMode = choice("TargetMode", "max", "min")
LauncherName = choice("LauncherName", "local", "torchrun")
Backend = choice("Backend", "auto", "gloo", "nccl")
LoggerName = choice("LoggerName", "jsonl", "wandb")
LoggerMode = choice("LoggerMode", "offline", "online", "disabled")
Amp = choice("Amp", "auto", "off", "bf16", "fp16")
Resume = choice("Resume", "auto", "never")

# The metrics the loop records for each task, with the range each can take (a target outside it is
# never reached): the one list that the trainer's and the advisor's target checks read.
METRICS = {"classification": {"test_acc": (0.0, 1.0), "test_loss": (0.0, math.inf), "train_loss": (0.0, math.inf)},
           "language": {"test_ppl": (1.0, math.inf), "test_loss": (0.0, math.inf), "train_loss": (0.0, math.inf)}}


def target_text(t) -> str:
    """A target as the reports and messages write it: ``test_acc >= 0.8`` (``t``: a target node or dict)."""
    return f"{t['metric']} {'>=' if t['mode'] == 'max' else '<='} {float(t['value']):g}"


# ------------------------------------------------------------------ the runner's keys of components
@dataclass
class DataKeys:
    """``data``: the loop's and the pipeline's keys; every other key is an argument of ``data._target_``
    (the data set builder, which returns ``runner.data.Splits``)."""

    name: str = MISSING  # a label for reports
    batch_size: int = 32  # per rank
    workers: int = 0  # DataLoader worker processes (0: load in the pipeline's own thread)
    prefetch_factor: int = 2  # batches each worker loads ahead
    pin_memory: Optional[bool] = None  # page-locked host memory for the copy to a GPU (None: on with CUDA)
    persistent_workers: bool = True
    augment_on_echo: bool = False  # re-augment an echoed batch on the device (Choi et al.'s "before augmentation")
    max_train_examples: Optional[int] = None  # keep only the first N training examples (smoke runs)
    max_test_examples: Optional[int] = None
    # Shared: in every data node (so that `-m dataset=a,b data.root=DIR` composes), passed to the
    # builder when it takes them.
    root: Optional[str] = None  # where the data set's files are (or will be downloaded to)
    download: bool = True


# Keys of a component that every node has and that go to its target only if the target takes them.
SHARED = {DataKeys: ("root", "download")}


@dataclass
class OptimKeys:
    """``optim``: the learning-rate schedule and clipping; every other key (``lr`` included) is an
    argument of ``optim._target_``, an optimizer class built with ``_partial_: true``."""

    name: str = MISSING  # a label for reports
    lr: float = MISSING  # the peak learning rate, also passed to the optimizer
    lr_schedule: LrSchedule = LrSchedule.cosine  # over the budget fraction u
    warmup: float = 0.0  # fraction of the budget with a linear warm-up
    lr_min_ratio: float = 0.0  # final lr / lr for cosine and linear
    milestones: List[float] = field(default_factory=lambda: [0.5, 0.75])  # lr_schedule=step
    gamma: float = 0.1  # lr_schedule=step
    grad_clip: Optional[float] = None


@dataclass
class ScheduleKeys:
    """``schedule`` and ``comm.schedule``: p(u) is built by ``_target_`` (a function returning u -> p)."""

    name: str = MISSING  # a label for reports


@dataclass
class CommKeys:
    """``comm``: the strategy class is ``comm._target_``, built with the model and the process group."""

    name: str = MISSING  # a label for reports
    checksums: bool = False  # a parameter checksum after every round (timed apart from training)
    schedule: Any = None  # p^c(u), built and passed to strategies that take a `schedule`


# What the runner itself passes when it builds a component: not config keys.
RUNTIME_ARGS = {"optim": {"params"}, "comm": {"model", "ctx", "seed", "schedule"}, "data": set(),
                "schedule": set(), "comm.schedule": set(),
                "model": set()}  # the data set's facts (num_classes, ...) fill unset model arguments


# -------------------------------------------------------------------------------- plain groups
@dataclass
class EchoConfig:
    policy: EchoPolicy = EchoPolicy.stochastic
    factor: float = 2.0  # batch / example echoing
    buffer: int = 1024  # example echoing: shuffle buffer size in examples
    # echo=adaptive: what says a fresh batch is ready. auto: the simulated clock when a hardware
    # profile is set (deterministic), else the real pipeline; pipeline: the real pipeline always
    # (the simulated clock, if any, then predicts the time of the real decisions).
    ready_from: ReadyFrom = ReadyFrom.auto


@dataclass
class BudgetConfig:
    """The run stops at whichever budget is reached first; u is the largest fraction consumed. A budget
    of example loads ends at the step that would load beyond it."""

    example_loads: Optional[int] = None
    steps: Optional[int] = None
    sim_s: Optional[float] = None
    # Stop after the first evaluation at or past this fraction of the budget (status "stopped", with a
    # checkpoint); the same command with a larger value (or none) continues. Not in the config hash.
    stop_at: Optional[float] = None


@dataclass
class EvalConfig:
    every_loads: Optional[int] = None  # None: only at the end
    batch_size: int = 512
    # A fixed subset of this many test examples for every record but the last (the full test set):
    # the same examples as data.max_test_examples=N would keep. None: the whole test set every time.
    subset: Optional[int] = None


@dataclass
class TargetConfig:
    metric: str = "test_acc"
    value: Optional[float] = None
    mode: TargetMode = TargetMode.max  # max: reached when metric >= value; min: when metric <= value
    stop: bool = False  # end the run at the first record that reaches the target


@dataclass
class PipelineConfig:
    examples_per_s: Optional[float] = None  # slow the real pipeline to this rate (per rank)
    prefetch: int = 2  # batches produced ahead of the trainer
    background: Optional[bool] = None  # a producer thread; None: on when examples_per_s is set


@dataclass
class HardwareConfig:
    name: str = "none"
    load_s_per_example: Optional[float] = None  # per worker
    workers: int = 1
    step_s: Optional[float] = None
    ratio: Optional[float] = None  # loading one batch takes `ratio` step-times; wins over load_s_per_example
    prefetch: int = 2
    comm_latency_s: float = 0.0  # per collective call
    comm_bandwidth_Bps: Optional[float] = None
    start_s: float = 0.0  # the pipeline's first batch comes this much later than one load time (workers starting)
    pause_s: float = 0.0  # seconds an unthrottled pipeline goes on loading while the loop evaluates
    info: Any = None  # where the numbers come from (a measured profile: machine, workload, date, spread)


@dataclass
class LauncherConfig:
    name: LauncherName = LauncherName.local
    nproc_per_node: int = 1
    nnodes: str = "1"
    node_rank: Optional[int] = None
    rdzv_backend: str = "c10d"
    rdzv_endpoint: str = "localhost:29400"
    rdzv_id: Optional[str] = None
    max_restarts: int = 0
    backend: Backend = Backend.auto  # auto: nccl with CUDA, gloo otherwise
    dry_run: bool = False


@dataclass
class LoggerConfig:
    name: LoggerName = LoggerName.jsonl
    progress: bool = True
    project: str = "echo-run"
    mode: LoggerMode = LoggerMode.offline  # wandb: offline unless the user asks for online
    entity: Optional[str] = None


@dataclass
class TrainConfig:
    device: str = "auto"  # auto: cuda when available
    amp: Amp = Amp.auto  # auto: bf16 on a GPU that supports it, off on CPU; off | bf16 | fp16 (with a GradScaler)
    compile: bool = False
    channels_last: bool = True  # for CNNs on a GPU
    deterministic: bool = False  # torch.use_deterministic_algorithms
    threads: Optional[int] = None  # torch.set_num_threads on CPU
    check_every: int = 50  # steps between checks for a signal or a non-finite loss (one all-reduce across ranks)


@dataclass
class CheckpointConfig:
    every_loads: Optional[int] = None  # None: at each evaluation
    enabled: bool = True


def _defaults(keys) -> Dict[str, Any]:
    """A component's runner keys with their defaults (the target and its arguments come from YAML)."""
    plain = lambda v: v.value if isinstance(v, Enum) else v  # noqa: E731 - the YAML's own form
    return {f.name: plain(f.default_factory() if callable(f.default_factory) else f.default)
            for f in fields(keys) if f.default is not MISSING or callable(f.default_factory)}


@dataclass
class Config:
    data: Any = field(default_factory=lambda: _defaults(DataKeys))
    model: Any = MISSING
    schedule: Any = MISSING
    echo: EchoConfig = field(default_factory=EchoConfig)
    optim: Any = field(default_factory=lambda: _defaults(OptimKeys))
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    target: TargetConfig = field(default_factory=TargetConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    comm: Any = field(default_factory=lambda: _defaults(CommKeys))
    launcher: LauncherConfig = field(default_factory=LauncherConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    seed: int = 0
    resume: Resume = Resume.auto  # auto: continue a run found in the run directory; never: refuse one
    name: Optional[str] = None  # a label for reports


COMPONENTS = {"data": DataKeys, "optim": OptimKeys, "schedule": ScheduleKeys, "comm": CommKeys,
              "comm.schedule": ScheduleKeys, "model": None}


def register() -> None:
    ConfigStore.instance().store(name="echo_run_schema", node=Config)


# --------------------------------------------------------------------------------------- checks
def _check(ok: bool, key: str, value: Any, want: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is not valid: it must be {want}.")


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _prob(key: str, v: Any) -> None:
    _check(_is_num(v) and math.isfinite(v) and 0 < v <= 1, key, v, "a probability in (0, 1]")


def _pos(key: str, v: Any, allow_none: bool = False) -> None:
    if v is None and allow_none:
        return
    _check(_is_num(v) and math.isfinite(v) and v > 0, key, v, "a positive number")


def _nonneg(key: str, v: Any) -> None:
    _check(_is_num(v) and math.isfinite(v) and v >= 0, key, v, "0 or more")


def _field_type(schema: Any, key: str) -> Any:
    """The type the schema gives a dotted key (None where it gives none: a component's own keys)."""
    t = schema
    for part in key.split("."):
        if not (isinstance(t, type) and is_dataclass(t)):
            return None
        t = get_type_hints(t).get(part)
    return t


def _refused(key: str, value: Any, e: Exception, t: Any = None) -> ConfigError:
    """OmegaConf's refusal of a value typed ``t`` as one paragraph: the key, the value, what it must be."""
    if isinstance(t, type) and issubclass(t, Choice):
        return ConfigError(f"{key}={value!r} is not valid: it must be one of {', '.join(m.value for m in t)}.")
    return ConfigError(f"{key}={value!r} is not valid: {str(e).splitlines()[0]} (check the value given to {key}).")


def check_typed(cfg: DictConfig) -> None:
    """Every value the schema types (a choice among an Enum's strings, a number, a flag) as OmegaConf
    checks it: a config built without the schema (``OmegaConf.create``) is merged onto it here."""
    try:
        OmegaConf.merge(OmegaConf.structured(Config), cfg)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", "") or ""
        raise _refused(key, OmegaConf.select(cfg, key, default=None), e, _field_type(Config, key)) from None


def check_overrides(overrides) -> None:
    """A command line's value for an Enum-typed key, checked by OmegaConf before Hydra composes, so that
    a typo is refused with the project's paragraph (the key, the value and the choices), sweeps included."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf.nodes import EnumNode

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException:
        return  # a malformed override: Hydra says what is wrong with it
    for o in parsed:
        t = _field_type(Config, o.key_or_group)
        if o.is_delete() or not (isinstance(t, type) and issubclass(t, Choice)):
            continue
        for v in (list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.value()]):
            if isinstance(v, str) and "${" in v:
                continue  # an interpolation: resolved, and checked, when composed
            try:
                EnumNode(enum_type=t, value=v)
            except OmegaConfBaseException as e:
                raise _refused(o.key_or_group, v, e, t) from None


def _fractions(key: str, v: Any) -> None:
    ms = list(v) if isinstance(v, (list, ListConfig)) else None
    _check(ms is not None and all(_is_num(m) and 0 < m < 1 for m in ms) and ms == sorted(ms), key, ms,
           "an increasing list of fractions in (0, 1)")


# Ranges of well-known arguments of components, whoever's class takes them.
ARG_CHECKS = {
    "schedule": {"p": _prob, "p_max": _prob, "p_min": _prob, "milestones": _fractions,
                 "gamma": lambda k, v: _check(_is_num(v) and 0 < v <= 1, k, v, "in (0, 1]")},
    "optim": {"lr": _pos, "weight_decay": _nonneg, "eps": _pos,
              "momentum": lambda k, v: _check(_is_num(v) and 0 <= v < 1, k, v, "in [0, 1)"),
              "betas": lambda k, v: _check(isinstance(v, (list, tuple, ListConfig)) and len(v) == 2
                                           and all(_is_num(b) and 0 <= b < 1 for b in v), k, v,
                                           "two numbers in [0, 1)")},
    "comm": {"k": _pos, "period": _pos, "warmup_steps": _nonneg, "outer_lr": _pos,
             "outer_momentum": lambda k, v: _check(_is_num(v) and 0 <= v < 1, k, v, "in [0, 1)")},
    "data": {"test_fraction": lambda k, v: _check(_is_num(v) and 0 < v < 1, k, v, "in (0, 1)"),
             "block_size": _pos, "image_size": _pos,
             "vocab_size": lambda k, v: _check(_is_num(v) and v >= 260, k, v,
                                               "at least 260 (the bytes plus a few merges)")},
}
ARG_CHECKS["comm.schedule"] = ARG_CHECKS["schedule"]


def _group(prefix: str) -> str:
    """The config group a node is chosen from (``data`` is chosen with ``dataset=``)."""
    head = prefix.split(".")[0]
    return "dataset" if head == "data" else head


class TargetNotFound(LookupError):
    """A ``_target_`` path whose module or attribute does not exist (the path is wrong, not the code)."""


def locate(path: str):
    """The object a dotted path names, importing the longest module prefix that exists.

    Only a path that names nothing raises ``TargetNotFound``: the module itself (or a package above
    it) missing, or an attribute the module does not have. Anything the module's own code raises
    while it is imported, a ModuleNotFoundError for a module that it imports included, propagates as
    itself with its traceback: that is an error in the code, not in the path."""
    import importlib

    parts = path.split(".")
    if not all(parts):
        raise TargetNotFound(f"{path!r} is not a dotted path")
    for i in range(len(parts), 0, -1):
        name = ".".join(parts[:i])
        try:
            obj = importlib.import_module(name)
            break
        except ModuleNotFoundError as e:
            if e.name is None or not (name == e.name or name.startswith(e.name + ".")):
                raise  # a module that the user's module imports is missing
    else:
        raise TargetNotFound(f"no module named {parts[0]!r}")
    for j in range(i, len(parts)):
        try:
            obj = getattr(obj, parts[j])
        except AttributeError as e:
            raise TargetNotFound(f"{'.'.join(parts[:j])!r} has no attribute {parts[j]!r}") from e
    return obj


def target_of(node: Any, prefix: str):
    """The object that ``node._target_`` names (ConfigError when missing or when the path names nothing)."""
    tgt = node.get("_target_") if isinstance(node, DictConfig) else None
    group = _group(prefix)
    if not tgt:
        raise ConfigError(f"{prefix} has no _target_: choose one with {group}=<option> (see echo-run --help), "
                          f"or set {prefix}._target_ to your own class or function.")
    try:
        return locate(tgt)
    except TargetNotFound as e:
        raise ConfigError(f"{prefix}._target_={tgt!r} cannot be imported ({e}): "
                          f"choose an option with {group}=<option> (see echo-run --help), or check the module "
                          "path of your own class (importable from the current directory or PYTHONPATH).") from e


def target_args(node: DictConfig, keys) -> Dict[str, Any]:
    """The keys of a component node that go to its ``_target_``: not the runner's own, not
    ``_..._``; shared keys only if the target takes them."""
    own = {f.name for f in fields(keys)} if keys is not None else set()
    if keys is OptimKeys:
        own.discard("lr")  # the optimizer's argument too
    args = {k: node[k] for k in node if k not in own and not str(k).startswith("_")}
    shared = SHARED.get(keys, ())
    if shared:
        params = inspect.signature(target_of(node, "data")).parameters
        args.update({k: node[k] for k in shared if k in node and k in params})
    return args


def validate_component(cfg: DictConfig, prefix: str) -> None:
    """The runner's keys of a component typed and defaulted; the rest checked against its target."""
    node = OmegaConf.select(cfg, prefix)
    keys = COMPONENTS[prefix]
    target = target_of(node, prefix)
    if keys is not None:
        own = {f.name for f in fields(keys)}
        try:
            typed = OmegaConf.merge(OmegaConf.structured(keys), {k: node[k] for k in node if k in own})
            plain = OmegaConf.to_container(typed, throw_on_missing=True, enum_to_str=True)
        except OmegaConfBaseException as e:
            key = getattr(e, "full_key", "") or ""
            raise _refused(f"{prefix}.{key}", node.get(key), e, _field_type(keys, key)) from None
        with open_dict(node):
            for k in own:
                node[k] = plain[k]
    params = inspect.signature(target).parameters
    runtime = RUNTIME_ARGS[prefix]
    args = target_args(node, keys)
    for k in SHARED.get(keys, ()):
        default = next(f.default for f in fields(keys) if f.name == k)
        if k not in params and node[k] != default:
            raise ConfigError(f"{prefix}.{k}={node[k]!r} does not apply to {prefix} {node._target_}, which takes no "
                              f"{k}: drop it, or choose a {_group(prefix)} that reads files (see README.md).")
    if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        for k in args:
            if k not in params or k in runtime:
                options = [p for p in params if p not in runtime and p != "self"
                           and params[p].kind not in (params[p].VAR_POSITIONAL, params[p].VAR_KEYWORD)]
                raise ConfigError(f"{prefix}.{k} is not an option of {prefix} {node._target_}: its options are "
                                  f"{', '.join(options) or 'none'}. Check the spelling.")
    for k, v in args.items():
        p = params.get(k)
        if p is not None and p.default is not inspect.Parameter.empty and p.default is not None \
                and _is_num(p.default) and v is not None and not _is_num(v):
            raise ConfigError(f"{prefix}.{k}={v!r} is not valid: it must be a number (the default of "
                              f"{node._target_} is {p.default!r}).")
        check = ARG_CHECKS.get(prefix, {}).get(k)
        if check is not None and v is not None:
            check(f"{prefix}.{k}", v)


def validate_keys(node: Any, schema: Any, prefix: str = "") -> None:
    """Refuse keys the schema does not know (``+train.foo=1`` would otherwise be accepted)."""
    known = {f.name: f for f in fields(schema)}
    for k in node:
        if k not in known:
            raise ConfigError(f"{prefix}{k} is not an option of echo-run{' ' + prefix[:-1] if prefix else ''}: "
                              f"the options there are {', '.join(sorted(known))}. Check the spelling "
                              "(`echo-run --help` shows the whole config).")
        v = node[k]
        sub = known[k].default_factory() if callable(known[k].default_factory) else None
        if is_dataclass(sub) and isinstance(v, DictConfig):
            validate_keys(v, type(sub), f"{prefix}{k}.")


def validate_data_root(d: Any) -> None:
    """The data set's directory must be readable, or creatable when the data may be downloaded."""
    if d.root is None:
        return
    root = Path(str(d.root)).expanduser()
    fix = ("put the data set's files there (README.md says which) or point data.root=DIR at the directory "
           "that holds them")
    if root.exists():
        if not root.is_dir():
            raise ConfigError(f"data.root={d.root} is a file, not a directory: {fix}.")
        if not os.access(root, os.R_OK | os.X_OK):
            raise ConfigError(f"data.root={d.root} cannot be read by this user: fix its permissions or {fix}.")
        return
    if not d.download:
        raise ConfigError(f"data.root={d.root} does not exist and data.download=false: {fix}, or allow "
                          "data.download=true where there is a network.")
    parent = root
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"data.root={d.root} does not exist and cannot be created ({parent} is not a writable "
                          f"directory): {fix}, or choose a writable data.root for the download.")


def expected_world(la: Any) -> Optional[int]:
    """Ranks the launcher will start (None: decided at rendezvous, an elastic MIN:MAX job)."""
    if la.name == "local":
        return 1
    nodes = str(la.nnodes)
    return None if ":" in nodes else int(nodes) * la.nproc_per_node


def check_stop_at(cfg: DictConfig) -> None:
    """budget.stop_at stops at an evaluation and continues from its checkpoint: both must exist."""
    f = cfg.budget.stop_at
    if f is None:
        return
    _check(math.isfinite(f) and 0 < f <= 1, "budget.stop_at", f, "a fraction of the budget in (0, 1]")
    if not cfg.eval.every_loads or not cfg.checkpoint.enabled:
        raise ConfigError(f"budget.stop_at={f} stops the run after an evaluation and continues it from the checkpoint "
                          "written there, but " + ("eval.every_loads is not set (the run evaluates only at its "
                          "end)" if not cfg.eval.every_loads else "checkpoint.enabled=false") + ": set "
                          "eval.every_loads (a divisor of the budget's fraction stops exactly there) and keep "
                          "checkpoint.enabled=true, or drop budget.stop_at.")


def validate(cfg: DictConfig) -> None:
    """Range checks for every numeric option and choice; raises ConfigError on the first."""
    validate_keys(cfg, Config)
    check_typed(cfg)  # the choices (Enum-typed keys) and types of the plain groups, as OmegaConf checks them
    for prefix in COMPONENTS:
        validate_component(cfg, prefix)
    d = cfg.data
    _pos("data.batch_size", d.batch_size)
    _nonneg("data.workers", d.workers)
    _pos("data.prefetch_factor", d.prefetch_factor)
    _pos("data.max_train_examples", d.max_train_examples, allow_none=True)
    _pos("data.max_test_examples", d.max_test_examples, allow_none=True)
    s = cfg.schedule
    for prefix, sch in (("schedule", s), ("comm.schedule", cfg.comm.schedule)):
        if "p_min" in sch and "p_max" in sch:
            _check(sch.p_min <= sch.p_max, f"{prefix}.p_min", sch.p_min, f"at most {prefix}.p_max={sch.p_max}")
    e = cfg.echo
    _check(math.isfinite(e.factor) and e.factor >= 1, "echo.factor", e.factor, "a number of at least 1")
    _pos("echo.buffer", e.buffer)
    if e.policy == "example" and d.augment_on_echo:
        raise ConfigError("data.augment_on_echo=true does not apply to echo=example, which mixes repeated examples "
                          "through a shuffle buffer before batching (an echoed example is never a held batch): "
                          "use echo=stochastic or echo=batch to re-augment echoed batches, or drop "
                          "data.augment_on_echo.")
    o = cfg.optim
    _check(0 <= o.warmup < 1, "optim.warmup", o.warmup, "a fraction in [0, 1)")
    _check(0 <= o.lr_min_ratio <= 1, "optim.lr_min_ratio", o.lr_min_ratio, "in [0, 1]")
    _fractions("optim.milestones", o.milestones)
    _check(0 < o.gamma <= 1, "optim.gamma", o.gamma, "in (0, 1]")
    _pos("optim.grad_clip", o.grad_clip, allow_none=True)
    b = cfg.budget
    _check(any(v is not None for v in (b.example_loads, b.steps, b.sim_s)), "budget", "null",
           "set: give budget.example_loads, budget.steps or budget.sim_s")
    _pos("budget.example_loads", b.example_loads, allow_none=True)
    _pos("budget.steps", b.steps, allow_none=True)
    _pos("budget.sim_s", b.sim_s, allow_none=True)
    _check(b.sim_s is None or cfg.hardware.name != "none", "budget.sim_s", b.sim_s,
           "used with a hardware profile (hardware=...), since the simulated clock needs one")
    _pos("eval.every_loads", cfg.eval.every_loads, allow_none=True)
    _pos("eval.batch_size", cfg.eval.batch_size)
    _pos("eval.subset", cfg.eval.subset, allow_none=True)
    check_stop_at(cfg)
    _check(not cfg.target.stop or cfg.target.value is not None, "target.stop", True,
           "used with a target.value to stop at")
    p = cfg.pipeline
    _pos("pipeline.examples_per_s", p.examples_per_s, allow_none=True)
    _pos("pipeline.prefetch", p.prefetch)
    h = cfg.hardware
    if h.name != "none":
        _check(h.load_s_per_example is not None or h.ratio is not None, "hardware.load_s_per_example", None,
               "set, or hardware.ratio set (the time to load one batch in step-times)")
        if h.ratio is None:
            _check(h.load_s_per_example >= 0, "hardware.load_s_per_example", h.load_s_per_example,
                   "0 or more seconds")
        else:
            _check(math.isfinite(h.ratio) and h.ratio >= 0, "hardware.ratio", h.ratio, "0 or more")
        _pos("hardware.step_s", h.step_s)
        _pos("hardware.workers", h.workers)
        _pos("hardware.prefetch", h.prefetch)
        _check(h.comm_latency_s >= 0, "hardware.comm_latency_s", h.comm_latency_s, "0 or more seconds")
        _check(h.start_s >= 0, "hardware.start_s", h.start_s, "0 or more seconds")
        _check(h.pause_s >= 0, "hardware.pause_s", h.pause_s, "0 or more seconds")
        _pos("hardware.comm_bandwidth_Bps", h.comm_bandwidth_Bps, allow_none=True)
        check_stamp(cfg)
    background = p.background if p.background is not None else (p.examples_per_s is not None or d.workers > 0)
    _check(e.ready_from != "clock" or h.name != "none", "echo.ready_from", "clock",
           "used with a hardware profile (hardware=...), whose simulated clock says when a batch is ready")
    if e.policy == "adaptive" and (h.name == "none" or e.ready_from == "pipeline") and not background:
        raise ConfigError(
            "echo=adaptive needs something that tells when a fresh batch is ready: choose a hardware "
            "profile (hardware=gpu_nvme, ...) for the simulated clock, or a background pipeline "
            "(data.workers=N, pipeline.examples_per_s=..., or pipeline.background=true).")
    la = cfg.launcher
    _pos("launcher.nproc_per_node", la.nproc_per_node)
    _check(la.max_restarts >= 0, "launcher.max_restarts", la.max_restarts, "0 or more")
    _check(re.fullmatch(r"[1-9][0-9]*(:[1-9][0-9]*)?", str(la.nnodes)) is not None, "launcher.nnodes", la.nnodes,
           "a number of nodes, or MIN:MAX for an elastic job")
    ranks = getattr(target_of(cfg.comm, "comm"), "ranks", "any")
    world = expected_world(la)
    if ranks == "many" and world == 1:
        raise ConfigError(
            f"comm={cfg.comm.name} communicates between several processes, but "
            f"{'launcher=local trains in this one' if la.name == 'local' else 'the torchrun job has one rank'}: "
            "add launcher=torchrun launcher.nproc_per_node=N (N >= 2) to train on N ranks (README, "
            "\"Data-parallel echoing with torchrun\"), or leave comm out.")
    if ranks == "one" and (world is None or world > 1):
        raise ConfigError(
            f"comm={cfg.comm.name} trains one process, but the torchrun job starts "
            f"{world or 'several'} ranks that would each train alone on their shard: choose comm=allreduce "
            "for plain data parallelism (DDP) or another strategy (comm=on_load, periodic, probabilistic, "
            "grad_accum), or launcher.nproc_per_node=1.")
    t = cfg.train
    _check(t.device in ("auto", "cpu") or t.device.startswith("cuda"), "train.device", t.device,
           "auto, cpu or cuda[:N]")
    _pos("train.threads", t.threads, allow_none=True)
    _pos("train.check_every", t.check_every)
    _pos("checkpoint.every_loads", cfg.checkpoint.every_loads, allow_none=True)
    validate_data_root(d)
    try:
        OmegaConf.resolve(cfg)  # an interpolation error surfaces here, not mid-run
    except OmegaConfBaseException as e:
        raise ConfigError(f"the config could not be resolved: {str(e).splitlines()[0]}.") from None
