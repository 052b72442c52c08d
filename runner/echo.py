"""The echo stage: turns any iterator of fresh batches into a stream of training steps that either
load a fresh batch or echo (reuse) the one already held. Usable on its own around a DataLoader::

    from runner.echo import EchoStream
    from runner import schedules

    stream = EchoStream(iter(loader), policy="stochastic", schedule=schedules.cosine(1.0, 0.2), seed=0)
    for t in range(steps):
        s = stream.next(u=t / steps)          # s.batch, s.fresh, s.loaded, s.p
        loss = loss_fn(model(s.batch[0]), s.batch[1]) ...

echo-run's own training loop uses this class, and so does ``EchoLoader``, which wraps any iterable of
batches (a DataLoader, a Hugging Face or Lightning loader) for a trainer that iterates over it.

A batch is a tensor, or a tuple, list or mapping (dict, transformers' BatchEncoding) of them, nested
as deep as you like; the example dimension is the first dimension of every tensor.
"""
from __future__ import annotations

import atexit
import copy
import math
import queue
import sys
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, List, Optional

import torch

from . import schedules as S
from .seeds import echo_seed  # the echo coin's stream, apart from the run's others (runner/seeds.py)

Batch = Any  # a tensor, or a tuple / list / mapping of batches (see the module's docstring)


# -- batches as trees of tensors. torch.utils._pytree knows dict, list and tuple but not a Mapping
# such as BatchEncoding (a UserDict), which it would take for one leaf; these few lines know all of them.
def tree_map(fn: Callable[[torch.Tensor], torch.Tensor], batch: Batch) -> Batch:
    """``fn`` applied to every tensor of ``batch``, its structure and container types kept; other
    leaves (strings, numbers) are kept as they are."""
    if torch.is_tensor(batch):
        return fn(batch)
    if isinstance(batch, Mapping):
        out = copy.copy(batch)  # the same type with its attributes (BatchEncoding's encodings), new items
        for k in batch:
            out[k] = tree_map(fn, batch[k])
        return out
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a namedtuple
        return type(batch)(*(tree_map(fn, v) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(tree_map(fn, v) for v in batch)
    return batch


def leaves(batch: Batch) -> List[torch.Tensor]:
    """The tensors of ``batch``, in ``tree_map``'s order."""
    out: List[torch.Tensor] = []
    tree_map(lambda t: out.append(t) or t, batch)
    return out


def rebuild(batch: Batch, tensors: List[torch.Tensor]) -> Batch:
    """``batch``'s structure with its tensors replaced, in order, by ``tensors``."""
    it = iter(tensors)
    return tree_map(lambda _: next(it), batch)


def _first_tensor(batch: Batch) -> Optional[torch.Tensor]:
    if torch.is_tensor(batch):
        return batch
    for v in batch.values() if isinstance(batch, Mapping) else batch if isinstance(batch, (list, tuple)) else ():
        t = _first_tensor(v)
        if t is not None:
            return t
    return None


def batch_len(batch: Batch) -> int:
    """The number of examples in ``batch``: the first dimension of its first tensor (``len`` of a
    mapping would count its keys)."""
    t = _first_tensor(batch)  # at every step of the loop: no walk over the whole batch
    if t is None or t.dim() == 0:
        raise TypeError(f"a batch needs a tensor with an example dimension; got {type(batch).__name__} "
                        f"{'with none' if t is None else 'whose first tensor is a scalar'}")
    return t.shape[0]


def _only_tensors(batch: Batch) -> Batch:
    """Example echoing splits every leaf by example: a leaf that is not a tensor cannot be split."""
    other, stack = [], [batch]
    while stack:
        b = stack.pop()
        if isinstance(b, Mapping):
            stack.extend(b.values())
        elif isinstance(b, (list, tuple)):
            stack.extend(b)
        elif not torch.is_tensor(b):
            other.append(type(b).__name__)
    if other:
        raise TypeError(f"example echoing splits every field of a batch by example, and this batch holds "
                        f"{', '.join(sorted(set(other)))} values that are not tensors. Drop them in the "
                        "collate function, or use the batch or stochastic policy, which keep batches whole.")
    return batch


POLICIES = ("stochastic", "batch", "example", "adaptive")


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
    ``transfer`` moves a fresh batch to the device once (and the held batch and example buffer that
    ``load_state_dict`` restores); echo steps reuse the device tensors, passed through ``on_echo`` if
    given (augmentation on echo). Example echoing keeps its buffer where the upstream's batches are.
    """

    def __init__(self, upstream: Iterator[Batch], policy: str = "stochastic", schedule: S.Schedule = S.none(),
                 factor: float = 1.0, buffer: int = 1024, seed: int = 0,
                 ready: Optional[Callable[[], bool]] = None, agree: Optional[Callable[[bool], bool]] = None,
                 transfer: Callable[[Batch], Batch] = lambda b: b, on_echo: Optional[Callable[[Batch], Batch]] = None):
        if policy not in POLICIES:
            raise ValueError(f"unknown echo policy {policy!r}: choose one of {', '.join(POLICIES)}")
        if policy == "adaptive" and ready is None:
            raise ValueError("the adaptive policy needs ready(): something that says a fresh batch is waiting")
        self.upstream, self.policy, self.schedule = upstream, policy, schedule
        self.factor, self.buffer_size = float(factor), int(buffer)
        self.ready, self.agree, self.transfer, self.on_echo = ready, agree, transfer, on_echo
        self.gen = torch.Generator().manual_seed(seed)
        self.current: Optional[Batch] = None
        self.uses_left = 0  # batch echoing: uses of the current batch still to come
        # Example echoing: the buffered examples, a batch of the upstream's structure (None: empty),
        # on the device the upstream's batches come on.
        self.pool: Optional[Batch] = None
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
            return Step(batch, True, batch_len(batch), p)
        batch = self.on_echo(self.current) if self.on_echo else self.current
        return Step(batch, False, 0, p)

    def _pool_len(self) -> int:
        return 0 if self.pool is None else batch_len(self.pool)

    def _next_example(self) -> Step:
        loaded, n = 0, self._batch_size
        while not self.exhausted and (self.pool is None or self._pool_len() < max(self.buffer_size, n)):
            try:
                b = _only_tensors(next(self.upstream))
            except StopIteration:
                self.exhausted = True
                break
            k = batch_len(b)
            loaded += k
            reps = torch.tensor([self._repeats() for _ in range(k)])
            # The counts go where the batch is: repeat_interleave wants both on one device.
            on = {}
            fields = tree_map(lambda t: t.repeat_interleave(on.setdefault(t.device, reps.to(t.device)), dim=0), b)
            self.pool = fields if self.pool is None else rebuild(
                self.pool, [torch.cat([p, f]) for p, f in zip(leaves(self.pool), leaves(fields))])
            self._batch_size = n = k
        size = self._pool_len()
        if size == 0:
            raise StopIteration
        # Draw a uniform random batch from the shuffle buffer without replacement.
        take = torch.randperm(size, generator=self.gen)[:n]
        keep = torch.ones(size, dtype=torch.bool)
        keep[take] = False
        batch = tree_map(lambda t: t[take.to(t.device)], self.pool)
        self.pool = tree_map(lambda t: t[keep.to(t.device)], self.pool)
        self.current = self.transfer(batch)
        return Step(self.current, loaded > 0, loaded, 1.0 if loaded else 0.0)

    _batch_size = 1  # set from the first upstream batch

    def restart(self, upstream: Iterator[Batch]) -> None:
        """A new upstream (the next epoch), starting afresh: its first step loads. The coin goes on."""
        self.upstream, self.current, self.uses_left, self.pool, self.exhausted = upstream, None, 0, None, False

    def __iter__(self) -> Iterator[Step]:
        """Iterate until upstream ends with u = 0 (use ``next(u)`` for a schedule over a budget)."""
        while True:
            try:
                yield self.next(0.0)
            except StopIteration:
                return

    # Checkpointing: the coin, the held batch and the buffer; the upstream saves its own position.
    # Both batches come back through ``transfer``, so they land on the device that fresh ones do.
    def state_dict(self) -> dict:
        cpu = lambda b: None if b is None else tree_map(lambda t: t.detach().cpu(), b)
        return {"gen": self.gen.get_state(), "current": cpu(self.current), "uses_left": self.uses_left,
                "pool": cpu(self.pool), "batch_size": self._batch_size, "exhausted": self.exhausted}

    def load_state_dict(self, st: dict) -> None:
        self.gen.set_state(st["gen"])
        self.current = None if st["current"] is None else self.transfer(st["current"])
        self.uses_left, self._batch_size, self.exhausted = st["uses_left"], st["batch_size"], st["exhausted"]
        self.pool = None if st["pool"] is None else self.transfer(st["pool"])


# -- EchoLoader: echoing for a trainer that iterates over a loader (a plain loop, Hugging Face, Lightning)
class _End:
    """The wrapped loader's pass ended."""


class _Failed:
    def __init__(self, exc: BaseException):
        self.exc = exc


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    """Put ``item`` unless told to stop meanwhile (a full queue must not keep the thread alive)."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.05)
            return True
        except queue.Full:
            pass
    return False


def _prefetch(it: Iterator, q: queue.Queue, stop: threading.Event, state: Optional[Callable[[], dict]]) -> None:
    # A module-level function, holding the loader's iterator and not the EchoLoader: an abandoned
    # EchoLoader is collected, and its __del__ stops this thread.
    try:
        while not stop.is_set():
            try:
                batch = next(it)
            except StopIteration:
                _put(q, _End(), stop)
                return
            # The loader's position after this batch: what a checkpoint taken once the trainer holds it saves.
            if not _put(q, (batch, state() if state else None), stop):
                return
    except Exception as e:  # any error of the loader: raised as itself in the training thread, where the batch is taken
        _put(q, _Failed(e), stop)


class _Prefetcher:
    """One pass over a loader in a background thread, ``depth`` batches ahead of the trainer."""

    JOIN_S = 5.0

    def __init__(self, loader: Iterable, depth: int):
        self.state = getattr(loader, "state_dict", None)
        self.consumed = self.state() if self.state else None  # the loader's state at the last batch taken
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=_prefetch, args=(iter(loader), self.queue, self.stop, self.state),
                                       daemon=True, name="echo-loader-prefetch")
        self.thread.start()
        _LIVE.add(self)

    def ready(self) -> bool:
        """A fresh batch (or the pass's end, or the loader's error) is waiting."""
        return not self.queue.empty()

    def batches(self) -> Iterator[Batch]:
        while True:
            item = self.queue.get()
            if isinstance(item, _End):
                return
            if isinstance(item, _Failed):
                raise item.exc
            batch, self.consumed = item
            yield batch

    def close(self) -> None:
        self.stop.set()
        if not sys.is_finalizing():
            self.thread.join(self.JOIN_S)  # a batch still loading finishes first


# A daemon thread still inside torch when the interpreter finalizes aborts the process ("terminate
# called without an active exception"): stop every prefetch thread at exit, before that.
_LIVE: "weakref.WeakSet[_Prefetcher]" = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for pre in list(_LIVE):
        pre.close()


def _counted(it: Iterator, cell: List[int]) -> Iterator:
    for batch in it:
        cell[0] += 1
        yield batch


class EchoLoader:
    """Data echoing around any iterable of batches, for a trainer that iterates over a loader::

        for batch in EchoLoader(loader, policy="batch", factor=2):   # each fresh batch is used twice
            ...

    It yields the loader's own batch objects (tuples, lists, dicts, BatchEncoding); an echo step
    yields the object it yielded before (do not change a batch in place, or pass ``on_echo``).
    One iteration is one pass over the loader with its echoes. The policies are EchoStream's:

      ``batch`` / ``example`` - ``factor`` uses of every batch / example (``buffer``: example echoing's
                                shuffle buffer, in examples);
      ``stochastic``          - load with probability ``p``, or ``schedule(u)`` where u is the
                                fraction of ``total_loads`` fresh batches loaded so far (or of
                                ``epochs`` passes over a loader with a length);
      ``adaptive``            - load when the next batch is ready, echo while it is not: a
                                background thread reads ``prefetch`` batches ahead.

    ``len()`` is the expected number of steps of a pass (the adaptive policy has none: it depends on
    the loader's speed). ``steps``, ``example_loads``, ``echo_steps``, ``batch_loads`` (fresh batches)
    and ``p`` (at the last step) count the whole training. ``state_dict`` / ``load_state_dict`` hold
    these, the coin, the held batch and the buffer, and the wrapped loader's state when it has one
    (torchdata's StatefulDataLoader): a resumed EchoLoader continues the same batches and decisions.
    It is deliberately not a DataLoader, nor does it pass the loader's attributes on: code that
    rebuilds a DataLoader from them (accelerate's skip_first_batches) would drop the echoing.
    """

    def __init__(self, loader: Iterable, policy: str = "batch", factor: float = 2.0, *, p: Optional[float] = None,
                 schedule: Optional[S.Schedule] = None, total_loads: Optional[int] = None,
                 epochs: Optional[int] = None, buffer: int = 1024, seed: int = 0, prefetch: int = 2,
                 on_echo: Optional[Callable[[Batch], Batch]] = None):
        if policy not in POLICIES:
            raise ValueError(f"unknown echo policy {policy!r}: choose one of {', '.join(POLICIES)}")
        self.loader, self.policy, self.factor = loader, policy, float(factor)
        self.total_loads: Optional[int] = None
        if policy == "stochastic":
            if (p is None) == (schedule is None):
                raise ValueError("the stochastic policy needs exactly one of p=... (a constant probability of "
                                 "loading a fresh batch) and schedule=... (p as a function of u)")
            if p is not None:
                if not 0 < p <= 1:
                    raise ValueError(f"p={p} is not a probability of loading in (0, 1]")
                schedule = S.constant(p)
            else:
                self.total_loads = total_loads or (epochs * len(loader) if epochs and hasattr(loader, "__len__")
                                                   else None)
                if not self.total_loads:
                    raise ValueError("a schedule needs the budget it runs over: pass total_loads=... (the fresh "
                                     "batches the whole training loads) or epochs=... with a loader that has a "
                                     "length")
        elif p is not None or schedule is not None or total_loads is not None:
            raise ValueError(f"p, schedule and total_loads are for the stochastic policy, not {policy!r}")
        if policy in ("batch", "example") and self.factor < 1:
            raise ValueError(f"factor={factor}: a batch or example is used factor >= 1 times")
        if policy == "adaptive" and prefetch < 1:
            raise ValueError(f"prefetch={prefetch}: the adaptive policy reads at least one batch ahead")
        self.schedule, self.prefetch = schedule, int(prefetch)
        self.stream = EchoStream(iter(()), policy, schedule or S.none(), factor=self.factor, buffer=buffer,
                                 seed=seed, ready=lambda: True, on_echo=on_echo)
        self.steps = self.example_loads = self.echo_steps = 0
        self.p = 1.0
        self._pulled = [0]  # fresh batches taken from the loader (a cell the upstream counter shares)
        self._in_pass = self._resume = False
        self._pass_start = 0  # batch_loads when this pass began (the schedule's u over it, for len())
        self._pre: Optional[_Prefetcher] = None

    @property
    def batch_loads(self) -> int:
        return self._pulled[0]

    @property
    def ready(self) -> bool:
        """The adaptive policy's background thread holds the next batch (always True for the others)."""
        return self._pre.ready() if self._pre is not None else self.policy != "adaptive"

    def __iter__(self) -> Iterator[Batch]:
        self.close()
        resume, self._resume = self._resume, False
        if self.policy == "adaptive":
            self._pre = pre = _Prefetcher(self.loader, self.prefetch)
            self.stream.ready, up = pre.ready, pre.batches()
        else:
            pre, up = None, iter(self.loader)
        up = _counted(up, self._pulled)
        if resume:
            self.stream.upstream = up  # continue the pass a checkpoint was taken in
        else:
            self.stream.restart(up)
            self._pass_start = self._pulled[0]
        self._in_pass = True
        return self._steps(pre)

    def _steps(self, pre: Optional[_Prefetcher]) -> Iterator[Batch]:
        try:
            while True:
                u = self._pulled[0] / self.total_loads if self.total_loads else 0.0
                try:
                    s = self.stream.next(u)
                except StopIteration:
                    break
                self.steps += 1
                self.example_loads += s.loaded
                self.echo_steps += not s.fresh
                self.p = s.p
                yield s.batch
            self._in_pass = False
        finally:  # the pass ended, failed or was abandoned: stop its thread
            if pre is not None:
                pre.close()
                if self._pre is pre:
                    self._pre = None

    def __len__(self) -> int:
        if self.policy == "adaptive":
            raise TypeError("an adaptive EchoLoader has no length: how often it echoes depends on the loader's "
                            "speed. Give the trainer a number of steps (max_steps)")
        n = len(self.loader)  # a TypeError for a loader without one, as trainers expect
        if self.policy in ("batch", "example"):
            return round(n * self.factor)
        start, total = (self._pass_start if self._in_pass else self._pulled[0]), self.total_loads
        ps = [self.schedule((start + i) / total if total else 0.0) for i in range(n)]
        if min(ps) <= 0:
            raise ValueError("the schedule reaches p = 0 within this pass: it would echo one batch forever")
        return round(sum(1.0 / q for q in ps))  # 1/p steps per fresh batch on average

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.loader, "set_epoch"):
            self.loader.set_epoch(epoch)

    # -- checkpointing: torchdata's Stateful protocol
    def state_dict(self) -> dict:
        if self._pre is not None:
            loader = self._pre.consumed  # the batches read ahead are not the trainer's yet
        else:
            loader = self.loader.state_dict() if hasattr(self.loader, "state_dict") else None
        return {"stream": self.stream.state_dict(), "loader": loader, "in_pass": self._in_pass,
                "counters": {"steps": self.steps, "example_loads": self.example_loads, "echo_steps": self.echo_steps,
                             "batch_loads": self._pulled[0], "p": self.p,
                             "pass_start": self._pass_start}}

    def load_state_dict(self, st: dict) -> None:
        self.close()
        if st["loader"] is not None:
            if not hasattr(self.loader, "load_state_dict"):
                raise ValueError(f"this state holds its loader's position, and the loader given now "
                                 f"({type(self.loader).__name__}) cannot load one: wrap the same kind of loader "
                                 "(e.g. torchdata's StatefulDataLoader)")
            self.loader.load_state_dict(st["loader"])
        self.stream.load_state_dict(st["stream"])
        c = st["counters"]
        self.steps, self.example_loads, self.echo_steps, self.p = c["steps"], c["example_loads"], c["echo_steps"], c["p"]
        self._pulled[0], self._pass_start = c["batch_loads"], c["pass_start"]
        self._in_pass = self._resume = bool(st["in_pass"])

    def close(self) -> None:
        """Stop the adaptive policy's background thread (garbage collection does it too)."""
        pre, self._pre = self._pre, None
        if pre is not None:
            pre.close()

    def __del__(self):
        try:
            self.close()
        except (AttributeError, TypeError, RuntimeError):  # at interpreter exit the thread machinery may be gone; the thread is a daemon
            pass


def from_config(cfg, upstream: Iterator[Batch], schedule: S.Schedule, **kw: Any) -> EchoStream:
    """An EchoStream for echo-run's ``echo`` group and the built p(u) (seeded from ``cfg.seed``)."""
    return EchoStream(upstream, policy=cfg.echo.policy, schedule=schedule, factor=cfg.echo.factor,
                      buffer=cfg.echo.buffer, seed=echo_seed(cfg.seed), **kw)
