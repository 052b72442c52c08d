"""The echo stage: turns any iterator of fresh batches into a stream of training steps that either
load a fresh batch or echo (reuse) the one already held. Usable on its own around a DataLoader::

    from runner.echo import EchoStream
    from runner import schedules

    stream = EchoStream(iter(loader), policy="stochastic", schedule=schedules.cosine(1.0, 0.2), seed=0)
    for t in range(steps):
        s = stream.next(u=t / steps)          # s.batch, s.fresh, s.loaded, s.p
        loss = loss_fn(model(s.batch[0]), s.batch[1]) ...

echo-run's own training loop uses this class. A batch is any tuple (or list) of tensors whose first
dimension is the example dimension.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator, List, Optional, Sequence

import torch

from . import schedules as S

Batch = Sequence[torch.Tensor]


@dataclass
class Step:
    batch: Batch  # what to train on (on the device when a ``transfer`` was given)
    fresh: bool  # True when this step pulled new data from upstream
    loaded: int  # examples pulled from upstream at this step
    p: float  # the probability of loading at this step (1 or 0 for deterministic policies)


class EchoStream:
    """Data echoing around an upstream iterator of batches.

    policy:
      ``stochastic`` - Algorithm 1: load with probability ``schedule(u)`` (always at the first step).
      ``batch``      - every fresh batch is used ``factor`` times (a fractional part by a coin).
      ``example``    - every example is repeated ``factor`` times and mixed through a shuffle buffer
                       of ``buffer`` examples before batching (Choi et al., 2019).
      ``adaptive``   - load when ``ready()`` says a fresh batch is waiting, echo otherwise.

    The coin has its own generator seeded by ``seed``: workers that share the seed share the coins.
    ``agree`` (data parallelism) turns this worker's readiness into the decision all workers take.
    ``transfer`` moves a fresh batch to the device once; echo steps reuse the device tensors, passed
    through ``on_echo`` if given (augmentation on echo).
    """

    def __init__(self, upstream: Iterator[Batch], policy: str = "stochastic", schedule: S.Schedule = S.none(),
                 factor: float = 1.0, buffer: int = 1024, seed: int = 0,
                 ready: Optional[Callable[[], bool]] = None, agree: Optional[Callable[[bool], bool]] = None,
                 transfer: Callable[[Batch], Batch] = lambda b: b, on_echo: Optional[Callable[[Batch], Batch]] = None):
        if policy not in ("stochastic", "batch", "example", "adaptive"):
            raise ValueError(f"unknown echo policy {policy!r}")
        if policy == "adaptive" and ready is None:
            raise ValueError("the adaptive policy needs ready(): something that says a fresh batch is waiting")
        self.upstream, self.policy, self.schedule = upstream, policy, schedule
        self.factor, self.buffer_size = float(factor), int(buffer)
        self.ready, self.agree, self.transfer, self.on_echo = ready, agree, transfer, on_echo
        self.gen = torch.Generator().manual_seed(seed)
        self.current: Optional[Batch] = None
        self.uses_left = 0  # batch echoing: uses of the current batch still to come
        self.pool: List[torch.Tensor] = []  # example echoing: buffered examples, one tensor per field
        self.exhausted = False

    def _coin(self) -> float:
        return torch.rand((), generator=self.gen).item()

    def _repeats(self) -> int:
        whole = math.floor(self.factor)
        return whole + (1 if self._coin() < self.factor - whole else 0)

    def _load(self) -> Batch:
        self.current = self.transfer(next(self.upstream))
        return self.current

    def next(self, u: float = 0.0) -> Step:
        """The batch for the next step at budget fraction ``u``; StopIteration when upstream ends."""
        if self.policy == "example":
            return self._next_example()
        first = self.current is None
        if self.policy == "stochastic":
            p = self.schedule(u)
            fresh = self._coin() < p or first
        elif self.policy == "batch":
            p = 1.0 if self.uses_left == 0 else 0.0
            fresh = first or self.uses_left == 0
            if fresh:
                self.uses_left = self._repeats()
            self.uses_left -= 1
        else:  # adaptive
            fresh = bool(self.ready())
            if self.agree is not None:
                fresh = self.agree(fresh)
            fresh = fresh or first
            p = float(fresh)
        if fresh:
            batch = self._load()
            return Step(batch, True, len(batch[0]), p)
        batch = self.on_echo(self.current) if self.on_echo else self.current
        return Step(batch, False, 0, p)

    def _next_example(self) -> Step:
        loaded, n = 0, self._batch_size
        while not self.exhausted and (not self.pool or len(self.pool[0]) < max(self.buffer_size, n)):
            try:
                b = next(self.upstream)
            except StopIteration:
                self.exhausted = True
                break
            loaded += len(b[0])
            reps = torch.tensor([self._repeats() for _ in range(len(b[0]))])
            fields = [t.repeat_interleave(reps, dim=0) for t in b]
            self.pool = fields if not self.pool else [torch.cat([p, f]) for p, f in zip(self.pool, fields)]
            self._batch_size = n = len(b[0])
        if not self.pool or len(self.pool[0]) == 0:
            raise StopIteration
        # Draw a uniform random batch from the shuffle buffer without replacement.
        take = torch.randperm(len(self.pool[0]), generator=self.gen)[:n]
        keep = torch.ones(len(self.pool[0]), dtype=torch.bool)
        keep[take] = False
        batch = [p[take] for p in self.pool]
        self.pool = [p[keep] for p in self.pool]
        self.current = self.transfer(batch)
        return Step(self.current, loaded > 0, loaded, 1.0 if loaded else 0.0)

    _batch_size = 1  # set from the first upstream batch

    def __iter__(self) -> Iterator[Step]:
        """Iterate until upstream ends with u = 0 (use ``next(u)`` for a schedule over a budget)."""
        while True:
            try:
                yield self.next(0.0)
            except StopIteration:
                return

    # Checkpointing: the coin, the held batch and the buffer; the upstream saves its own position.
    def state_dict(self) -> dict:
        cpu = lambda b: None if b is None else [t.detach().cpu() for t in b]
        return {"gen": self.gen.get_state(), "current": cpu(self.current), "uses_left": self.uses_left,
                "pool": cpu(self.pool) if self.pool else None, "batch_size": self._batch_size,
                "exhausted": self.exhausted}

    def load_state_dict(self, st: dict) -> None:
        self.gen.set_state(st["gen"])
        self.current = None if st["current"] is None else self.transfer(st["current"])
        self.uses_left, self._batch_size, self.exhausted = st["uses_left"], st["batch_size"], st["exhausted"]
        self.pool = list(st["pool"]) if st["pool"] is not None else []


def from_config(cfg, upstream: Iterator[Batch], schedule: S.Schedule, **kw: Any) -> EchoStream:
    """An EchoStream for echo-run's ``echo`` group and the built p(u) (seeded from ``cfg.seed``)."""
    return EchoStream(upstream, policy=cfg.echo.policy, schedule=schedule, factor=cfg.echo.factor,
                      buffer=cfg.echo.buffer, seed=echo_seed(cfg.seed), **kw)


def echo_seed(seed: int) -> int:
    # Its own stream, apart from the model's and the sampler's generators.
    return (seed * 1_000_003 + 17) % (2**63)
