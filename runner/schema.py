"""The typed schema of every config group, registered with Hydra's ConfigStore.

Hydra checks keys and types while composing (a typo or ``optim.lr=abc`` fails there); the range
checks below run once, in ``validate``, before anything is created, so that every bad value is
refused in one place with one message.
"""
from __future__ import annotations

import math
import re
import os
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf


class ConfigError(ValueError):
    """A configuration the user can fix; the CLI prints it and exits with status 2."""


SCHEDULES = ("none", "constant", "cosine", "linear", "step")
POLICIES = ("stochastic", "batch", "example", "adaptive")
COMMS = ("none", "allreduce", "grad_accum", "periodic", "probabilistic", "on_load")
TASKS = ("classification", "language")
LR_SCHEDULES = ("constant", "cosine", "linear", "step")


@dataclass
class DataConfig:
    name: str = MISSING
    task: str = "classification"
    root: Optional[str] = None  # where the data set's files are (or will be downloaded to)
    download: bool = True
    batch_size: int = 32  # per rank
    test_fraction: float = 0.2  # for data sets without an official test split
    split_seed: int = 0  # the train/test split is fixed by this seed, not by the run's seed
    block_size: int = 64  # language modelling: tokens per example
    vocab_size: int = 1024  # language modelling: BPE vocabulary trained on first use
    tokenizer: str = "gpt2"  # wikitext2: a directory with GPT-2's tokenizer files, or a hub name
    augment: bool = False
    augment_on_echo: bool = False  # re-augment an echoed batch (Choi et al.'s "before augmentation")
    max_train_examples: Optional[int] = None  # keep only the first N training examples (smoke runs)
    max_test_examples: Optional[int] = None


@dataclass
class ScheduleConfig:
    name: str = "cosine"
    p: float = 0.5  # constant
    p_max: float = 1.0  # cosine, linear, step
    p_min: float = 0.1  # cosine, linear
    gamma: float = 0.5  # step
    milestones: List[float] = field(default_factory=lambda: [0.5, 0.75])  # step, fractions of u


@dataclass
class EchoConfig:
    policy: str = "stochastic"
    factor: float = 2.0  # batch / example echoing
    buffer: int = 1024  # example echoing: shuffle buffer size in examples


@dataclass
class OptimConfig:
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    lr_schedule: str = "cosine"  # over the budget fraction u
    warmup: float = 0.0  # fraction of the budget with a linear warm-up
    lr_min_ratio: float = 0.0  # final lr / lr for cosine and linear
    milestones: List[float] = field(default_factory=lambda: [0.5, 0.75])  # lr_schedule=step
    gamma: float = 0.1  # lr_schedule=step
    grad_clip: Optional[float] = None


@dataclass
class BudgetConfig:
    """The run stops at whichever budget is reached first; u is the largest fraction consumed."""

    example_loads: Optional[int] = None
    steps: Optional[int] = None
    sim_s: Optional[float] = None


@dataclass
class EvalConfig:
    every_loads: Optional[int] = None  # None: only at the end
    batch_size: int = 512


@dataclass
class TargetConfig:
    metric: str = "test_acc"
    value: Optional[float] = None
    mode: str = "max"  # max: reached when metric >= value; min: when metric <= value


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
    comm_latency_s: float = 0.0
    comm_bandwidth_Bps: Optional[float] = None


@dataclass
class CommConfig:
    name: str = "none"
    k: int = 4  # grad_accum
    period: int = 4  # periodic
    warmup_steps: int = 0  # periodic: average every step before this
    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(name="constant"))


@dataclass
class LauncherConfig:
    name: str = "local"
    nproc_per_node: int = 1
    nnodes: str = "1"
    node_rank: Optional[int] = None
    rdzv_backend: str = "c10d"
    rdzv_endpoint: str = "localhost:29400"
    rdzv_id: Optional[str] = None
    max_restarts: int = 0
    backend: str = "auto"  # auto: nccl with CUDA, gloo otherwise
    dry_run: bool = False


@dataclass
class LoggerConfig:
    name: str = "jsonl"
    progress: bool = True
    project: str = "echo-run"
    mode: str = "offline"  # wandb: offline unless the user asks for online
    entity: Optional[str] = None


@dataclass
class TrainConfig:
    device: str = "auto"  # auto: cuda when available
    amp: str = "auto"  # auto: bf16 on a GPU that supports it, off on CPU; off | bf16 | fp16
    compile: bool = False
    channels_last: bool = True  # for CNNs on a GPU
    deterministic: bool = False
    threads: Optional[int] = None  # torch.set_num_threads on CPU


@dataclass
class CheckpointConfig:
    every_loads: Optional[int] = None  # None: at each evaluation
    enabled: bool = True


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: Any = MISSING  # instantiated with hydra.utils.instantiate (_target_)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    echo: EchoConfig = field(default_factory=EchoConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    target: TargetConfig = field(default_factory=TargetConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    comm: CommConfig = field(default_factory=CommConfig)
    launcher: LauncherConfig = field(default_factory=LauncherConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    seed: int = 0
    resume: str = "auto"  # auto: continue a run found in the run directory; never: refuse one
    name: Optional[str] = None  # a label for reports


def register() -> None:
    ConfigStore.instance().store(name="echo_run_schema", node=Config)


def _check(ok: bool, key: str, value: Any, want: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is not valid: it must be {want}.")


def _prob(key: str, v: float, zero_ok: bool = False) -> None:
    lo_ok = v >= 0 if zero_ok else v > 0
    _check(v is not None and math.isfinite(v) and lo_ok and v <= 1, key, v,
           "a probability in [0, 1]" if zero_ok else "a probability in (0, 1]")


def _pos(key: str, v: Any, allow_none: bool = False) -> None:
    if v is None and allow_none:
        return
    _check(v is not None and math.isfinite(v) and v > 0, key, v, "a positive number")


def _choice(key: str, v: str, choices: tuple) -> None:
    _check(v in choices, key, v, "one of " + ", ".join(choices))


def validate_schedule(prefix: str, s: Any) -> None:
    # Every field is checked, used by the chosen schedule or not: a bad value is a mistake either way.
    _choice(f"{prefix}.name", s.name, SCHEDULES)
    _prob(f"{prefix}.p", s.p)
    _prob(f"{prefix}.p_max", s.p_max)
    _prob(f"{prefix}.p_min", s.p_min)
    if s.name in ("cosine", "linear"):
        _check(s.p_min <= s.p_max, f"{prefix}.p_min", s.p_min, f"at most {prefix}.p_max={s.p_max}")
    _check(0 < s.gamma <= 1, f"{prefix}.gamma", s.gamma, "in (0, 1]")
    ms = list(s.milestones)
    _check(all(0 < m < 1 for m in ms) and ms == sorted(ms), f"{prefix}.milestones", ms,
           "an increasing list of fractions in (0, 1)")


def validate_keys(node: Any, schema: Any, prefix: str = "") -> None:
    """Refuse keys the schema does not know (``+optim.lrr=0.1`` would otherwise be accepted)."""
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


def validate_model_keys(m: DictConfig) -> None:
    """The model group's keys are the arguments of its ``_target_``."""
    import inspect

    from hydra.utils import get_object

    try:
        target = get_object(m._target_)
    except Exception:
        raise ConfigError(f"model._target_={m._target_!r} cannot be imported: choose a model with model=<name> "
                          "(see echo-run --help).") from None
    params = inspect.signature(target).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return
    for k in m:
        if not k.startswith("_") and k not in params:
            raise ConfigError(f"model.{k} is not an option of model {m._target_}: its options are "
                              f"{', '.join(p for p in params if p != 'self')}. Check the spelling.")


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


def validate(cfg: DictConfig) -> None:
    """Range checks for every numeric option and choice; raises ConfigError on the first."""
    validate_keys(cfg, Config)
    d = cfg.data
    _choice("data.task", d.task, TASKS)
    _pos("data.batch_size", d.batch_size)
    _check(0 < d.test_fraction < 1, "data.test_fraction", d.test_fraction, "in (0, 1)")
    _pos("data.block_size", d.block_size)
    _check(d.vocab_size >= 260, "data.vocab_size", d.vocab_size, "at least 260 (the bytes plus a few merges)")
    _pos("data.max_train_examples", d.max_train_examples, allow_none=True)
    _pos("data.max_test_examples", d.max_test_examples, allow_none=True)
    validate_schedule("schedule", cfg.schedule)
    e = cfg.echo
    _choice("echo.policy", e.policy, POLICIES)
    _check(math.isfinite(e.factor) and e.factor >= 1, "echo.factor", e.factor, "a number of at least 1")
    _pos("echo.buffer", e.buffer)
    o = cfg.optim
    _pos("optim.lr", o.lr)
    _check(0 <= o.momentum < 1, "optim.momentum", o.momentum, "in [0, 1)")
    _check(o.weight_decay >= 0, "optim.weight_decay", o.weight_decay, "0 or more")
    _choice("optim.lr_schedule", o.lr_schedule, LR_SCHEDULES)
    _check(0 <= o.warmup < 1, "optim.warmup", o.warmup, "a fraction in [0, 1)")
    _check(0 <= o.lr_min_ratio <= 1, "optim.lr_min_ratio", o.lr_min_ratio, "in [0, 1]")
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
    _choice("target.mode", cfg.target.mode, ("max", "min"))
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
        _pos("hardware.comm_bandwidth_Bps", h.comm_bandwidth_Bps, allow_none=True)
    background = p.background if p.background is not None else p.examples_per_s is not None
    if e.policy == "adaptive" and h.name == "none" and not background:
        raise ConfigError(
            "echo=adaptive needs something that tells when a fresh batch is ready: choose a hardware "
            "profile (hardware=gpu_nvme, ...) for the simulated clock, or set pipeline.background=true "
            "(and usually pipeline.examples_per_s) for a real background pipeline.")
    c = cfg.comm
    _choice("comm.name", c.name, COMMS)
    _pos("comm.k", c.k)
    _pos("comm.period", c.period)
    _check(c.warmup_steps >= 0, "comm.warmup_steps", c.warmup_steps, "0 or more")
    validate_schedule("comm.schedule", c.schedule)
    la = cfg.launcher
    _choice("launcher.name", la.name, ("local", "torchrun"))
    _pos("launcher.nproc_per_node", la.nproc_per_node)
    _check(la.max_restarts >= 0, "launcher.max_restarts", la.max_restarts, "0 or more")
    _choice("launcher.backend", la.backend, ("auto", "gloo", "nccl"))
    _check(re.fullmatch(r"[1-9][0-9]*(:[1-9][0-9]*)?", str(la.nnodes)) is not None, "launcher.nnodes", la.nnodes,
           "a number of nodes, or MIN:MAX for an elastic job")
    if c.name not in ("none", "grad_accum") and la.name == "local":
        raise ConfigError(
            f"comm={c.name} communicates between several processes, but launcher=local trains in this one: "
            "add launcher=torchrun launcher.nproc_per_node=N to train on N ranks (README, \"Data-parallel "
            "echoing with torchrun\"), or leave comm out.")
    _choice("logger.name", cfg.logger.name, ("jsonl", "wandb"))
    _choice("logger.mode", cfg.logger.mode, ("offline", "online", "disabled"))
    t = cfg.train
    _choice("train.amp", t.amp, ("auto", "off", "bf16", "fp16"))
    _check(t.device in ("auto", "cpu") or t.device.startswith("cuda"), "train.device", t.device,
           "auto, cpu or cuda[:N]")
    _pos("train.threads", t.threads, allow_none=True)
    _pos("checkpoint.every_loads", cfg.checkpoint.every_loads, allow_none=True)
    _choice("resume", cfg.resume, ("auto", "never"))
    if not (isinstance(cfg.model, DictConfig) and "_target_" in cfg.model):
        raise ConfigError("model has no _target_: choose a model with model=<name> (see echo-run --help).")
    validate_model_keys(cfg.model)
    validate_data_root(d)
    OmegaConf.resolve(cfg)  # an interpolation error surfaces here, not mid-run
