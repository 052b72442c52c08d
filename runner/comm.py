"""Communication strategies for data-parallel training (config group ``comm``, built from its
``_target_``: a user's own strategy subclasses ``Local`` and plugs in the same way).

The training loop talks to a strategy through a few calls: ``wrap(model)`` before training,
``backward_context()`` around each backward pass, ``should_step()`` after it (False while gradient
accumulation goes on), ``after_step(fresh, u)`` after each step (model averaging), and ``agree`` /
``reduce_max`` for the few scalars that ranks must share.

Counting: ``rounds`` is the number of steps on which the model was communicated, ``calls`` the
collective calls that carried it and ``bytes`` their payload, all counted where the calls are made
(DDP's communication hook, or the flattened tensor that model averaging all-reduces).
``sync_rounds`` counts the one-number all-reduces of ``agree`` (echo=adaptive), which are latency,
not model traffic. ``after_step`` returns the step's ``Traffic``: the payload of every collective
call, those that DDP overlaps with the backward pass apart from those made before or after the
compute, so that the simulated clock charges each call its latency and overlaps what overlaps.
Every collective uses the default process group that ``dist.init`` created before training; no
group is created afterwards.

Strategies (the paper's Algorithm 2); ``ranks`` says where each runs ("one", "many", "any"):
  ``Local``         one process, nothing to communicate;
  ``AllReduce``     gradients averaged every step by DDP (the baseline);
  ``GradAccum``     ``k`` micro-steps under DDP's ``no_sync()``, one all-reduce, one optimizer step;
  ``Periodic``      local steps, parameters and buffers averaged every ``period`` steps after
                    ``warmup_steps`` (PeriodicModelAverager's rule; averaging every step before);
  ``Probabilistic`` averaging with probability ``p^c(u)`` from a coin shared by all ranks;
  ``OnLoad``        averaging exactly on the steps that load fresh data.
The averaging strategies take an outer optimizer (``outer_optim``: null for plain averaging, or
``sgd`` / ``nesterov``): at a round the averaged model's offset from the last global model is a
pseudo-gradient for an outer SGD step (DiLoCo, Douillard et al. 2023).
"""
from __future__ import annotations

import inspect
from contextlib import nullcontext
from functools import reduce
from typing import List, NamedTuple, Optional, Tuple

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
from torch.distributed.algorithms.model_averaging.utils import average_parameters
from torch.nn.parallel import DistributedDataParallel as DDP

from .errors import ConfigError

_FNV_OFFSET, _FNV_PRIME, _MASK = 0xCBF29CE484222325, 0x100000001B3, (1 << 64) - 1


class Traffic(NamedTuple):
    """One step's collective calls, by payload in bytes."""

    round: bool = False  # the model (gradients or parameters) was communicated
    overlapped: Tuple[int, ...] = ()  # calls made during the backward pass (DDP's buckets)
    sequential: Tuple[int, ...] = ()  # calls before or after the compute (averaging, agreement)


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


def broadcast_model(model: nn.Module, src: int = 0) -> None:
    """Every rank starts from rank ``src``'s parameters and buffers, as DDP does at construction, so
    that averaging strategies never assume that equal seeds give equal models."""
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            dist.broadcast(t.data, src)


def checksum(tensors: List[torch.Tensor]) -> torch.Tensor:
    """[sum, sum of squares] in float64, left on the device (no host sync, no copy of the model)."""
    sums = torch.stack([t.detach().sum(dtype=torch.float64) for t in tensors]).sum()
    squares = torch.stack([torch.linalg.vector_norm(t.detach(), dtype=torch.float64) ** 2 for t in tensors]).sum()
    return torch.stack([sums, squares])


class Local:
    """One process: nothing to communicate. The base of the data-parallel strategies, which keep
    its counters, decision hash and checksums."""

    name = "none"
    ranks = "one"

    def __init__(self, model: nn.Module, ctx=None) -> None:
        self.model, self.ctx = model, ctx
        self.world = ctx.world if ctx is not None else 1
        self.rounds, self.bytes, self.calls, self.sync_rounds = 0, 0, 0, 0
        self.decisions = _FNV_OFFSET
        self.steps = 0
        self.last_round_step = None  # the step (0-based) of the last communication round
        self.checksum = None  # [sum, sum of squares] of parameters and buffers after the last round
        self.initial_checksum = checksum(self._tensors())  # what every rank starts from
        self._sent = 0  # model payload of collectives made since the last after_step
        self._overlapped: List[int] = []
        self._sequential: List[int] = []

    def wrap(self, model: nn.Module) -> nn.Module:
        return model

    def backward_context(self):
        return nullcontext()

    def should_step(self) -> bool:
        return True

    def communicate(self, fresh: bool, u: float) -> None:
        """Model averaging, if this strategy and step call for it (adds to ``_sent``)."""

    def after_step(self, fresh: bool, u: float) -> Traffic:
        """Communicate if this step calls for it; returns the step's collective calls."""
        self.communicate(fresh, u)
        sent = self._sent > 0
        if sent:
            self.rounds += 1
            self.bytes += self._sent
            self.last_round_step = self.steps
        traffic = Traffic(sent, tuple(self._overlapped), tuple(self._sequential))
        self._sent, self._overlapped, self._sequential = 0, [], []
        self.decisions = fold(self.decisions, fresh, sent)
        self.steps += 1
        return traffic

    def round_checksum(self) -> None:
        """The checksum after this step's round (``comm.checksums=true``; the loop times it apart)."""
        self.checksum = checksum(self._tensors())

    def _tensors(self) -> List[torch.Tensor]:
        # The Parameter objects themselves: average_parameters rebinds each one's ``.data``.
        return list(self.model.parameters()) + float_buffers(self.model)

    def _average(self, tensors: List[torch.Tensor]) -> None:
        """All-reduce the mean of ``tensors`` as one flat tensor (model_averaging's utility)."""
        dtype = reduce(torch.promote_types, (t.dtype for t in tensors))  # the flat tensor's type
        n = sum(t.numel() for t in tensors) * dtype.itemsize
        self.calls += 1
        self._sent += n
        self._sequential.append(n)
        average_parameters(iter(tensors), None)

    def agree(self, flag: bool) -> bool:
        """True only when every rank's flag is True (one all-reduce MIN of one number)."""
        if self.world == 1:
            return flag
        t = torch.tensor([int(flag)], dtype=torch.int32, device=self.ctx.device)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        self.sync_rounds += 1
        self._sequential.append(t.element_size())
        return bool(t.item())

    def reduce_max(self, values: list) -> list:
        """Elementwise maximum over ranks (training time is the slowest rank's, as in AlgoPerf); the
        runner's own bookkeeping, not part of the algorithm, so not in ``Traffic``."""
        if self.world == 1:
            return values
        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.ctx.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t.tolist()

    def report(self) -> dict:
        """What ``rank<k>.json`` holds: equal decision hashes and checksums across ranks show that
        the ranks drew the same coins, started from the same model and held the same model after
        the last round."""
        floats = lambda cs: None if cs is None else [float(v) for v in cs.tolist()]
        return {"rank": self.ctx.rank if self.ctx is not None else 0, "world_size": self.world, "comm": self.name,
                "steps": self.steps, "decision_hash": f"{self.decisions:016x}", "comm_rounds": self.rounds,
                "comm_calls": self.calls, "comm_bytes": self.bytes, "sync_rounds": self.sync_rounds,
                "last_round_step": self.last_round_step, "initial_checksum": floats(self.initial_checksum),
                "param_checksum": floats(self.checksum), "final_checksum": floats(checksum(self._tensors()))}

    def state_dict(self) -> dict:
        cpu = lambda t: None if t is None else t.cpu()
        return {"rounds": self.rounds, "bytes": self.bytes, "calls": self.calls, "sync_rounds": self.sync_rounds,
                "decisions": self.decisions, "steps": self.steps, "last_round_step": self.last_round_step,
                "checksum": cpu(self.checksum), "initial_checksum": cpu(self.initial_checksum)}

    def load_state_dict(self, st: dict) -> None:
        self.rounds, self.bytes, self.calls, self.sync_rounds = st["rounds"], st["bytes"], st["calls"], st["sync_rounds"]
        self.decisions, self.steps, self.last_round_step = st["decisions"], st["steps"], st["last_round_step"]
        self.checksum, self.initial_checksum = st["checksum"], st["initial_checksum"]


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
    n = buf.numel() * buf.element_size()
    strategy.calls += 1
    strategy._sent += n
    strategy._overlapped.append(n)
    return allreduce_hook(None, bucket)


class AllReduce(_DDPStrategy):
    name = "allreduce"
    ranks = "many"


class GradAccum(_DDPStrategy):
    """``k`` micro-steps, gradients kept local under ``no_sync()`` for the first ``k - 1``; the
    optimizer steps once on their mean (the reviewers' baseline). A checkpoint in the middle of an
    accumulation keeps the gradients summed so far, so a resumed run steps on the same sum."""

    name = "grad_accum"
    ranks = "any"

    def __init__(self, model, ctx, k: int = 4) -> None:
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
        partial = None
        if self.micro % self.k:
            partial = [None if p.grad is None else p.grad.detach().cpu() for p in self.model.parameters()]
        return {**super().state_dict(), "micro": self.micro, "grads": partial}

    def load_state_dict(self, st: dict) -> None:
        super().load_state_dict(st)
        self.micro = st["micro"]
        if st["grads"] is not None:
            for p, g in zip(self.model.parameters(), st["grads"]):
                p.grad = None if g is None else g.to(p.device)


class _Averaging(Local):
    """Local steps; parameters and float buffers averaged in one flat all-reduce when ``due``,
    optionally followed by an outer optimizer step on the pseudo-gradient (DiLoCo)."""

    ranks = "many"

    def __init__(self, model, ctx, outer_optim: Optional[str] = None, outer_lr: float = 0.7,
                 outer_momentum: float = 0.9) -> None:
        super().__init__(model, ctx)
        if outer_optim not in (None, "sgd", "nesterov"):
            raise ConfigError(f"comm.outer_optim={outer_optim!r} is not valid: it must be null (plain averaging), "
                              "sgd or nesterov (DiLoCo's outer Nesterov SGD).")
        self.outer = None
        if outer_optim is not None:
            # The global model every rank agrees on, updated only at rounds by the outer optimizer.
            self.global_params = [p.detach().clone().requires_grad_(True) for p in model.parameters()]
            self.outer = torch.optim.SGD(self.global_params, lr=outer_lr, momentum=outer_momentum,
                                         nesterov=outer_optim == "nesterov")

    def due(self, fresh: bool, u: float) -> bool:
        raise NotImplementedError

    def communicate(self, fresh: bool, u: float) -> None:
        if not self.due(fresh, u):
            return
        self._average(self._tensors())
        if self.outer is not None:
            with torch.no_grad():
                for g, p in zip(self.global_params, self.model.parameters()):
                    g.grad = g.detach() - p.detach()  # the pseudo-gradient: where the ranks went, reversed
            self.outer.step()
            self.outer.zero_grad(set_to_none=True)
            with torch.no_grad():
                for g, p in zip(self.global_params, self.model.parameters()):
                    p.copy_(g)

    def state_dict(self) -> dict:
        st = super().state_dict()
        if self.outer is not None:
            st["outer"] = {"params": [g.detach().cpu() for g in self.global_params], "opt": self.outer.state_dict()}
        return st

    def load_state_dict(self, st: dict) -> None:
        super().load_state_dict(st)
        if self.outer is not None:
            with torch.no_grad():
                for g, v in zip(self.global_params, st["outer"]["params"]):
                    g.copy_(v)
            self.outer.load_state_dict(st["outer"]["opt"])


class Periodic(_Averaging):
    """Every ``period`` steps after ``warmup_steps`` steps of averaging at every step: the rule of
    ``torch.distributed.algorithms.model_averaging.averagers.PeriodicModelAverager`` (whose
    parameter filter skips tensors without gradients, hence buffers, so the rule is applied here
    to parameters and buffers together; tests check the result against the averager)."""

    name = "periodic"

    def __init__(self, model, ctx, period: int = 4, warmup_steps: int = 0, outer_optim: Optional[str] = None,
                 outer_lr: float = 0.7, outer_momentum: float = 0.9) -> None:
        super().__init__(model, ctx, outer_optim, outer_lr, outer_momentum)
        self.period, self.warmup_steps = period, warmup_steps

    def due(self, fresh: bool, u: float) -> bool:
        s = self.steps
        return s < self.warmup_steps or (s - self.warmup_steps) % self.period == 0


class Probabilistic(_Averaging):
    """Algorithm 2: average with probability ``p^c(u)``; the coin's generator is seeded alike on
    every rank, so all ranks decide alike without exchanging a message."""

    name = "probabilistic"

    def __init__(self, model, ctx, schedule, seed: int, outer_optim: Optional[str] = None, outer_lr: float = 0.7,
                 outer_momentum: float = 0.9) -> None:
        super().__init__(model, ctx, outer_optim, outer_lr, outer_momentum)
        self.schedule = schedule
        self.gen = torch.Generator().manual_seed(comm_seed(seed))

    def due(self, fresh: bool, u: float) -> bool:
        return torch.rand((), generator=self.gen).item() < self.schedule(u)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "gen": self.gen.get_state()}

    def load_state_dict(self, st: dict) -> None:
        super().load_state_dict(st)
        self.gen.set_state(st["gen"])


class OnLoad(_Averaging):
    """Average exactly when fresh data arrives: echo steps stay local, so echoing costs no more
    communication than plain data parallelism at the same number of example loads."""

    name = "on_load"

    def due(self, fresh: bool, u: float) -> bool:
        return fresh


def build(c, model: nn.Module, ctx, seed: int) -> Local:
    """The strategy of the ``comm`` config node ``c`` (its ``_target_``) for this process: the model,
    the process's context, and, where the strategy takes them, the shared seed and p^c(u)."""
    from hydra.utils import get_object

    from .config import build as build_component
    from .schema import CommKeys, ScheduleKeys

    params = inspect.signature(get_object(c._target_)).parameters
    runtime = {"model": model, "ctx": ctx}
    if "seed" in params:
        runtime["seed"] = seed
    if "schedule" in params:
        runtime["schedule"] = build_component(c.schedule, ScheduleKeys)
    strategy = build_component(c, CommKeys, **runtime)
    if not isinstance(strategy, Local):
        raise ConfigError(f"comm._target_={c._target_!r} is not a runner.comm.Local: a communication strategy "
                          "subclasses runner.comm.Local (README, \"Your own code: components by _target_\").")
    return strategy
