"""Communication strategies for data-parallel training (config group ``comm``).

The training loop talks to a strategy through five calls: ``wrap(model)`` before training,
``backward_context()`` around each backward pass, ``should_step()`` after it (False while gradient
accumulation goes on), ``after_step(fresh, u)`` after each step (model averaging), and ``agree`` /
``reduce_max`` for the few scalars that ranks must share.

Counting: ``rounds`` is the number of steps on which the model was communicated, ``calls`` the
collective calls that carried it and ``bytes`` their payload, all counted where the calls are made
(DDP's communication hook, or the flattened tensor that model averaging all-reduces).
``sync_rounds`` counts the one-number all-reduces of ``agree`` (echo=adaptive), which are latency,
not model traffic. Every collective uses the default process group that ``dist.init`` created
before training; no group is created afterwards.

Strategies (DESIGN.md, "Algorithm 2"):
  ``allreduce``     gradients averaged every step by DDP (the baseline);
  ``grad_accum``    ``k`` micro-steps under DDP's ``no_sync()``, one all-reduce, one optimizer step;
  ``periodic``      local steps, parameters and buffers averaged every ``period`` steps after
                    ``warmup_steps`` (PeriodicModelAverager's rule; averaging every step before);
  ``probabilistic`` averaging with probability ``p^c(u)`` from a coin shared by all ranks;
  ``on_load``       averaging exactly on the steps that load fresh data.
"""
from __future__ import annotations

import inspect
from contextlib import nullcontext
from functools import reduce
from typing import List

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
from torch.distributed.algorithms.model_averaging.utils import average_parameters
from torch.nn.parallel import DistributedDataParallel as DDP

from . import schedules

_FNV_OFFSET, _FNV_PRIME, _MASK = 0xCBF29CE484222325, 0x100000001B3, (1 << 64) - 1


def fold(h: int, fresh: bool, sent: bool) -> int:
    """FNV-1a over the per-step decisions: equal on every rank iff all ranks decided alike."""
    return ((h ^ (int(fresh) | int(sent) << 1)) * _FNV_PRIME) & _MASK


def comm_seed(seed: int) -> int:
    # The communication coin's own stream: apart from the echo coin, the model and the sampler.
    return (seed * 2_000_029 + 101) % (2**63)


def float_buffers(model: nn.Module) -> List[torch.Tensor]:
    """Buffers that averaging must carry (BatchNorm statistics); integer counters such as
    ``num_batches_tracked`` advance identically on every rank and are left alone."""
    return [b for b in model.buffers() if b.is_floating_point()]


class Local:
    """One process: nothing to communicate. The base of the data-parallel strategies, which keep
    its counters, decision hash and checksum."""

    name = "none"

    def __init__(self, model: nn.Module, ctx=None) -> None:
        self.model, self.ctx = model, ctx
        self.world = ctx.world if ctx is not None else 1
        self.rounds, self.bytes, self.calls, self.sync_rounds = 0, 0, 0, 0
        self.decisions = _FNV_OFFSET
        self.steps = 0
        self.last_round_step = None  # the step (0-based) of the last communication round
        self.checksum = None  # on-device [sum, sum of squares] of parameters and buffers then
        self._sent = 0  # payload bytes of collectives made since the last after_step

    def wrap(self, model: nn.Module) -> nn.Module:
        return model

    def backward_context(self):
        return nullcontext()

    def should_step(self) -> bool:
        return True

    def communicate(self, fresh: bool, u: float) -> None:
        """Model averaging, if this strategy and step call for it (adds to ``_sent``)."""

    def after_step(self, fresh: bool, u: float) -> int:
        """Communicate if this step calls for it; returns the bytes sent (0 when it did not)."""
        self.communicate(fresh, u)
        nbytes, self._sent = self._sent, 0
        if nbytes:
            self.rounds += 1
            self.bytes += nbytes
            self.last_round_step = self.steps
            self.checksum = checksum(self._tensors())
        self.decisions = fold(self.decisions, fresh, nbytes > 0)
        self.steps += 1
        return nbytes

    def _tensors(self) -> List[torch.Tensor]:
        # The Parameter objects themselves: average_parameters rebinds each one's ``.data``.
        return list(self.model.parameters()) + float_buffers(self.model)

    def _average(self, tensors: List[torch.Tensor]) -> None:
        """All-reduce the mean of ``tensors`` as one flat tensor (model_averaging's utility)."""
        self.calls += 1
        dtype = reduce(torch.promote_types, (t.dtype for t in tensors))  # the flat tensor's type
        self._sent += sum(t.numel() for t in tensors) * dtype.itemsize
        average_parameters(iter(tensors), None)

    def agree(self, flag: bool) -> bool:
        """True only when every rank's flag is True (one all-reduce MIN of one number)."""
        if self.world == 1:
            return flag
        t = torch.tensor([int(flag)], dtype=torch.int32, device=self.ctx.device)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        self.sync_rounds += 1
        return bool(t.item())

    def reduce_max(self, values: list) -> list:
        """Elementwise maximum over ranks (training time is the slowest rank's, as in AlgoPerf)."""
        if self.world == 1:
            return values
        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.ctx.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t.tolist()

    def report(self) -> dict:
        """What ``rank<k>.json`` holds: equal decision hashes and checksums across ranks show that
        the ranks drew the same coins and held the same model after the last averaging."""
        cs = self.checksum
        return {"rank": self.ctx.rank if self.ctx is not None else 0, "world_size": self.world, "comm": self.name,
                "steps": self.steps, "decision_hash": f"{self.decisions:016x}", "comm_rounds": self.rounds,
                "comm_calls": self.calls, "comm_bytes": self.bytes, "sync_rounds": self.sync_rounds,
                "last_round_step": self.last_round_step,
                "param_checksum": None if cs is None else [float(v) for v in cs.tolist()],
                "final_checksum": [float(v) for v in checksum(self._tensors()).tolist()]}

    def state_dict(self) -> dict:
        return {"rounds": self.rounds, "bytes": self.bytes, "calls": self.calls, "sync_rounds": self.sync_rounds,
                "decisions": self.decisions, "steps": self.steps, "last_round_step": self.last_round_step,
                "checksum": None if self.checksum is None else self.checksum.cpu()}

    def load_state_dict(self, st: dict) -> None:
        self.rounds, self.bytes = st["rounds"], st["bytes"]
        self.calls, self.sync_rounds = st.get("calls", 0), st.get("sync_rounds", 0)
        self.decisions, self.steps = st.get("decisions", _FNV_OFFSET), st.get("steps", 0)
        self.last_round_step, self.checksum = st.get("last_round_step"), st.get("checksum")


def checksum(tensors: List[torch.Tensor]) -> torch.Tensor:
    """[sum, sum of squares] in float64, left on the device (no host sync per round, no copy of
    the model)."""
    sums = torch.stack([t.detach().sum(dtype=torch.float64) for t in tensors]).sum()
    squares = torch.stack([torch.linalg.vector_norm(t.detach(), dtype=torch.float64) ** 2 for t in tensors]).sum()
    return torch.stack([sums, squares])


class _DDPStrategy(Local):
    """Gradients all-reduced by DDP; a counting hook sees every bucket it sends. Buffers are not
    broadcast by DDP at each forward but averaged after each optimizer step, so that
    all strategies carry BatchNorm statistics the same way and count them."""

    def wrap(self, model: nn.Module) -> nn.Module:
        self.ddp = None
        if self.world == 1:  # grad_accum alone: accumulation without communication
            return model
        dev = self.ctx.device
        # Buffers are synced once at construction, then averaged by us, not broadcast every forward
        # (newer torch spells broadcast_buffers=False as forward_sync_buffers=False).
        kw = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(DDP).parameters
              else {"broadcast_buffers": False})
        self.ddp = DDP(model, device_ids=[dev] if dev.type == "cuda" else None, **kw)
        self.ddp.register_comm_hook(self, _counting_hook)
        return self.ddp

    def communicate(self, fresh: bool, u: float) -> None:
        bufs = float_buffers(self.model)
        if self._sent and bufs:  # gradients went out in this step's backward
            self._average(bufs)


def _counting_hook(strategy, bucket):  # DDP checks a hook's annotations: leave them out
    buf = bucket.buffer()
    strategy.calls += 1
    strategy._sent += buf.numel() * buf.element_size()
    return allreduce_hook(None, bucket)


class AllReduce(_DDPStrategy):
    name = "allreduce"


class GradAccum(_DDPStrategy):
    """``k`` micro-steps, gradients kept local under ``no_sync()`` for the first ``k - 1``; the
    optimizer steps once on their mean (the reviewers' baseline)."""

    name = "grad_accum"

    def __init__(self, model, ctx, k: int) -> None:
        super().__init__(model, ctx)
        self.k, self.micro, self.ddp = k, 0, None

    def backward_context(self):
        if self.ddp is None or (self.micro + 1) % self.k == 0:
            return nullcontext()
        return self.ddp.no_sync()

    def should_step(self) -> bool:
        self.micro += 1
        if self.micro % self.k:
            return False
        if self.k > 1:  # gradients were summed over k micro-batches: step on their mean
            for p in self.model.parameters():
                if p.grad is not None:
                    p.grad.div_(self.k)
        return True

    def state_dict(self) -> dict:
        return {**super().state_dict(), "micro": self.micro}

    def load_state_dict(self, st: dict) -> None:
        super().load_state_dict(st)
        self.micro = st.get("micro", 0)


class _Averaging(Local):
    """Local steps; parameters and float buffers averaged in one flat all-reduce when ``due``."""

    def due(self, fresh: bool, u: float) -> bool:
        raise NotImplementedError

    def communicate(self, fresh: bool, u: float) -> None:
        if self.due(fresh, u):
            self._average(self._tensors())


class Periodic(_Averaging):
    """Every ``period`` steps after ``warmup_steps`` steps of averaging at every step: the rule of
    ``torch.distributed.algorithms.model_averaging.averagers.PeriodicModelAverager`` (whose
    parameter filter skips tensors without gradients, hence buffers, so the rule is applied here
    to parameters and buffers together; tests check the result against the averager)."""

    name = "periodic"

    def __init__(self, model, ctx, period: int, warmup_steps: int) -> None:
        super().__init__(model, ctx)
        self.period, self.warmup_steps = period, warmup_steps

    def due(self, fresh: bool, u: float) -> bool:
        s = self.steps
        return s < self.warmup_steps or (s - self.warmup_steps) % self.period == 0


class Probabilistic(_Averaging):
    """Algorithm 2: average with probability ``p^c(u)``; the coin's generator is seeded alike on
    every rank, so all ranks decide alike without exchanging a message."""

    name = "probabilistic"

    def __init__(self, model, ctx, schedule, seed: int) -> None:
        super().__init__(model, ctx)
        self.schedule = schedule
        self.gen = torch.Generator().manual_seed(comm_seed(seed))

    def due(self, fresh: bool, u: float) -> bool:
        return torch.rand((), generator=self.gen).item() < self.schedule(u)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "gen": self.gen.get_state()}

    def load_state_dict(self, st: dict) -> None:
        super().load_state_dict(st)
        if "gen" in st:
            self.gen.set_state(st["gen"])


class OnLoad(_Averaging):
    """Average exactly when fresh data arrives: echo steps stay local, so echoing costs no more
    communication than plain data parallelism at the same number of example loads."""

    name = "on_load"

    def due(self, fresh: bool, u: float) -> bool:
        return fresh


def build(cfg, model: nn.Module, ctx) -> Local:
    """The strategy of ``cfg.comm`` for this process (``Local`` when it runs alone)."""
    c = cfg.comm
    if c.name == "grad_accum":  # alone too: k micro-batches per optimizer step
        return GradAccum(model, ctx, c.k)
    if ctx.world == 1:
        return Local(model, ctx)
    if c.name in ("none", "allreduce"):  # several ranks with no strategy named: plain DDP
        return AllReduce(model, ctx)
    if c.name == "periodic":
        return Periodic(model, ctx, c.period, c.warmup_steps)
    if c.name == "probabilistic":
        return Probabilistic(model, ctx, schedules.from_config(c.schedule), cfg.seed)
    if c.name == "on_load":
        return OnLoad(model, ctx)
    raise ValueError(f"unknown comm strategy {c.name!r}")
