"""Communication strategies for data-parallel training (config group ``comm``, built from its
``_target_``: a user's own strategy subclasses ``Local`` and plugs in the same way).

The training loop talks to a strategy through a few calls: ``wrap(model)`` before training,
``backward_context()`` around each backward pass, ``should_step()`` after it (False while gradient
accumulation goes on), ``after_step(fresh, u)`` after each step (model averaging), ``consensus()``
around each evaluation, ``final_round()`` at the end, and ``agree`` / ``reduce_max`` for the few
scalars that ranks must share.

Counting: ``rounds`` is the number of steps on which the model was communicated, plus the final
round, ``calls`` the collective calls that carried it and ``bytes`` their payload, all counted where
the calls are made (DDP's communication hook, or the flattened tensor that model averaging
all-reduces).

Consensus: every record evaluates the average of the ranks' models (``consensus()``: averaged in
place for the evaluation and restored bit for bit afterwards, so no rank's training changes; its
payload is counted apart, in ``eval_bytes``), and ``final_round()`` averages the ranks' models once
more at the end, so that every rank ends with the model the last record evaluated. Under DDP the
parameters are equal on every rank and only the float buffers (BatchNorm statistics, updated by
each rank's own batches) differ: they are averaged at records and at the end only, not after every
step, so that ``comm=allreduce`` costs what plain DDP costs.
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
from contextlib import contextmanager, nullcontext
from functools import reduce
from typing import Iterator, List, NamedTuple, Optional, Tuple

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
from torch.nn.parallel import DistributedDataParallel as DDP

from .errors import ConfigError
from .seeds import comm_seed  # the communication coin's stream, apart from the run's others (runner/seeds.py)

_FNV_OFFSET, _FNV_PRIME, _MASK = 0xCBF29CE484222325, 0x100000001B3, (1 << 64) - 1


class Traffic(NamedTuple):
    """One step's collective calls, by payload in bytes."""

    round: bool = False  # the model (gradients or parameters) was communicated
    overlapped: Tuple[int, ...] = ()  # calls made during the backward pass (DDP's buckets)
    sequential: Tuple[int, ...] = ()  # calls before or after the compute (averaging, agreement)


def fold(h: int, fresh: bool, sent: bool) -> int:
    """FNV-1a over the per-step decisions: equal on every rank iff all ranks decided alike."""
    return ((h ^ (int(fresh) | int(sent) << 1)) * _FNV_PRIME) & _MASK


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


def flatten(tensors: List[torch.Tensor]) -> torch.Tensor:
    """One flat copy of ``tensors`` in their common dtype, each in its logical (row-major) order."""
    dtype = reduce(torch.promote_types, (t.dtype for t in tensors))
    return torch.cat([t.detach().reshape(-1).to(dtype) for t in tensors])


def unflatten_(tensors: List[torch.Tensor], flat: torch.Tensor) -> None:
    """Copy ``flat`` back into ``tensors`` in place: each keeps its storage, dtype and memory format
    (channels_last), and the optimizer and DDP keep the tensors they hold."""
    with torch.no_grad():
        offset = 0
        for t in tensors:
            t.copy_(flat[offset:offset + t.numel()].view(t.shape))
            offset += t.numel()


def all_reduce_mean_(flat: torch.Tensor, world: int) -> None:
    """The mean over ranks, in place: divided first, then summed, as
    ``torch.distributed.algorithms.model_averaging.utils.average_parameters`` does (so the result is
    PeriodicModelAverager's to the bit). That utility is not called itself: it synchronises the
    whole device before its all-reduce and rebinds each parameter's ``.data`` to a contiguous view,
    which drops channels_last; a collective on the default stream needs no synchronisation."""
    flat /= world
    dist.all_reduce(flat)


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
        self.eval_bytes, self.eval_calls = 0, 0  # evaluation-only averages (consensus), apart from training's
        self.agreed = True  # every rank holds the same model (all start from rank 0's)
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
        traffic = self._close_round()
        self.agreed = self.world == 1 or self._agreed_after(sent)
        self.decisions = fold(self.decisions, fresh, sent)
        self.steps += 1
        return traffic

    def _close_round(self) -> Traffic:
        sent = self._sent > 0
        if sent:
            self.rounds += 1
            self.bytes += self._sent
            self.last_round_step = self.steps
        traffic = Traffic(sent, tuple(self._overlapped), tuple(self._sequential))
        self._sent, self._overlapped, self._sequential = 0, [], []
        return traffic

    def _agreed_after(self, sent: bool) -> bool:
        """Whether the ranks hold the same model after a step (``sent``: the step was a round)."""
        return sent

    def _unshared(self) -> List[torch.Tensor]:
        """The tensors that may differ between ranks, which the consensus and the final round average."""
        return self._tensors()

    @contextmanager
    def consensus(self) -> Iterator[nn.Module]:
        """The model to evaluate: the average of the ranks' models, every rank taking part (rank 0
        alone evaluates it). Each rank's tensors are averaged in place and restored afterwards from
        a flat copy, bit for bit, so its training (parameters, BatchNorm statistics, optimizer) goes
        on as if nothing happened; the payload is counted in ``eval_bytes``, not in ``bytes``. When
        the ranks already agree (one process, the step after a round, DDP without BatchNorm) there is
        nothing to average."""
        if self.agreed:
            yield self.model
            return
        tensors = self._unshared()
        own = flatten(tensors)
        avg = own.clone()
        all_reduce_mean_(avg, self.world)
        self.eval_calls += 1
        self.eval_bytes += avg.numel() * avg.element_size()
        unflatten_(tensors, avg)
        try:
            yield self.model
        finally:
            unflatten_(tensors, own)

    def final_round(self) -> bool:
        """At the end of training, one more averaging round, if the ranks' models differ: every rank
        ends with the average of the ranks' models, which is what the records evaluate (plain
        averaging, also under an outer optimizer). Counted in ``rounds``, ``calls`` and ``bytes``, at
        ``last_round_step = steps`` (after the last step); returns whether it communicated."""
        if self.agreed:
            return False
        self._average(self._unshared())
        self._close_round()
        self.agreed = True
        return True

    def round_checksum(self) -> None:
        """The checksum after this step's round (``comm.checksums=true``; the loop times it apart)."""
        self.checksum = checksum(self._tensors())

    def _tensors(self) -> List[torch.Tensor]:
        return list(self.model.parameters()) + float_buffers(self.model)

    def _average(self, tensors: List[torch.Tensor]) -> None:
        """All-reduce the mean of ``tensors`` as one flat tensor, copied back in place."""
        flat = flatten(tensors)
        n = flat.numel() * flat.element_size()
        self.calls += 1
        self._sent += n
        self._sequential.append(n)
        all_reduce_mean_(flat, self.world)
        unflatten_(tensors, flat)

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
                "eval_comm_calls": self.eval_calls, "eval_comm_bytes": self.eval_bytes,
                "last_round_step": self.last_round_step, "initial_checksum": floats(self.initial_checksum),
                "param_checksum": floats(self.checksum), "final_checksum": floats(checksum(self._tensors()))}

    def state_dict(self) -> dict:
        cpu = lambda t: None if t is None else t.cpu()
        return {"rounds": self.rounds, "bytes": self.bytes, "calls": self.calls, "sync_rounds": self.sync_rounds,
                "decisions": self.decisions, "steps": self.steps, "last_round_step": self.last_round_step,
                "checksum": cpu(self.checksum), "initial_checksum": cpu(self.initial_checksum),
                "eval_calls": self.eval_calls, "eval_bytes": self.eval_bytes, "agreed": self.agreed}

    def load_state_dict(self, st: dict) -> None:
        self.rounds, self.bytes, self.calls, self.sync_rounds = st["rounds"], st["bytes"], st["calls"], st["sync_rounds"]
        self.decisions, self.steps, self.last_round_step = st["decisions"], st["steps"], st["last_round_step"]
        self.checksum, self.initial_checksum = st["checksum"], st["initial_checksum"]
        # Checkpoints written before the consensus existed: nothing averaged for evaluation yet, and
        # whether the ranks agree unknown, so the next record averages (harmless when they do).
        self.eval_calls, self.eval_bytes = st.get("eval_calls", 0), st.get("eval_bytes", 0)
        self.agreed = st.get("agreed", self.world == 1)


class _DDPStrategy(Local):
    """Gradients all-reduced by DDP; a counting hook sees every bucket it sends. The parameters are
    equal on every rank after every step; the float buffers (BatchNorm statistics) are not
    broadcast at each forward nor averaged after each step, but averaged at records (``consensus``)
    and at the end (``final_round``), as the averaging strategies' are: a step costs what plain
    DDP's costs, and every strategy carries BatchNorm statistics the same way."""

    def wrap(self, model: nn.Module) -> nn.Module:
        self.ddp = None
        if self.world == 1:  # grad_accum alone: accumulation without communication
            return model
        dev = self.ctx.device
        # Buffers are synced once at construction, then averaged at records, not broadcast every forward
        # (newer torch spells broadcast_buffers=False as forward_sync_buffers=False).
        kw = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(DDP).parameters
              else {"broadcast_buffers": False})
        self.ddp = DDP(model, device_ids=[dev] if dev.type == "cuda" else None, **kw)
        self.ddp.register_comm_hook(self, _counting_hook)
        self._buffers = bool(float_buffers(model))
        return self.ddp

    def _agreed_after(self, sent: bool) -> bool:
        # Every forward in training mode moves each rank's BatchNorm statistics by its own batch.
        return self.ddp is None or not self._buffers

    def _unshared(self) -> List[torch.Tensor]:
        return float_buffers(self.model)


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
