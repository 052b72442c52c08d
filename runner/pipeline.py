"""The upstream input pipeline: an endless, resumable stream of fresh batches of one rank's shard.

Epoch orders come from ``DistributedSampler`` (seed + epoch, the rank's shard, the last partial batch
dropped), so the position ``(epoch, batch)`` of the next batch the trainer takes is all a checkpoint
needs to continue exactly.

Two ways to run it:
- synchronous (default): the trainer fetches each batch itself when it asks for one;
- background (``pipeline.background``, on by default when ``pipeline.examples_per_s`` is set): a
  producer thread loads batches ahead of the trainer while it computes, at most ``prefetch`` batches
  in flight or waiting, like a DataLoader with workers. ``ready()`` says a batch is waiting.

``examples_per_s`` slows loading for real (sleeping as a slow disk or decoder would). ``idle_s`` is the
time the trainer spent waiting for a batch. The content and order of batches never depend on timing.
"""
from __future__ import annotations

import queue
import threading
import time
from typing import Callable, Iterator, Optional, Sequence

import torch
from torch.utils.data import Dataset, DistributedSampler, TensorDataset
from torch.utils.data._utils.collate import default_collate

Batch = Sequence[torch.Tensor]


def fetcher(ds: Dataset) -> Callable[[Sequence[int]], Batch]:
    """Gather a batch by indices (a list or a tensor): one indexing op for in-memory tensors, else
    collate the items."""
    if isinstance(ds, TensorDataset):
        return lambda idx: [t[torch.as_tensor(idx)] for t in ds.tensors]
    as_list = lambda idx: idx.tolist() if torch.is_tensor(idx) else list(idx)
    if hasattr(ds, "__getitems__"):  # a batch at once, as DataLoader asks (vectorised augmentation)
        return lambda idx: default_collate(ds.__getitems__(as_list(idx)))
    return lambda idx: default_collate([ds[i] for i in as_list(idx)])


def background_on(p) -> bool:
    """``pipeline.background``; unset means on exactly when the pipeline is slowed for real."""
    bg = getattr(p, "background", None)
    return bool(bg) if bg is not None else p.examples_per_s is not None


class _Failed:
    """An exception raised in the producer, handed to the trainer to raise there."""

    def __init__(self, exc: BaseException):
        self.exc = exc


class BatchSource:
    """Fresh batches of ``batch_size`` from ``ds`` for ``rank`` of ``world``, epoch after epoch."""

    def __init__(self, ds: Dataset, batch_size: int, seed: int, rank: int = 0, world: int = 1,
                 examples_per_s: Optional[float] = None, background: bool = False, prefetch: int = 2):
        self.sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.batch_size = batch_size
        self.per_epoch = len(self.sampler) // batch_size
        if self.per_epoch == 0:
            raise ValueError(f"data.batch_size={batch_size} is larger than this rank's shard of "
                             f"{len(self.sampler)} training examples: lower data.batch_size.")
        self.fetch = fetcher(ds)
        self.examples_per_s = examples_per_s
        self.background, self.prefetch = background, max(1, int(prefetch))
        self.epoch, self.pos = 0, 0  # the next batch the trainer takes
        self._orders: dict = {}  # epoch -> index order (at most two epochs kept)
        self.idle_s = 0.0
        self._thread: Optional[threading.Thread] = None
        # Pausing (while the trainer evaluates or checkpoints, time that is not training time): the
        # producer starts no batch, and a batch being loaded is delayed by the pause.
        self._lock = threading.Lock()
        self._paused_at: Optional[float] = None
        self._paused_total = 0.0
        self._running = threading.Event()
        self._running.set()

    # -- the order and the loading of one batch, shared by both modes
    def _indices(self, epoch: int, pos: int) -> torch.Tensor:
        if epoch not in self._orders:
            self.sampler.set_epoch(epoch)
            self._orders = {e: o for e, o in self._orders.items() if e >= epoch - 1}
            # A tensor: indexing in-memory data with a slice of it is far cheaper than with a list.
            self._orders[epoch] = torch.tensor(list(self.sampler), dtype=torch.long)
        return self._orders[epoch][pos * self.batch_size:(pos + 1) * self.batch_size]

    def _load(self, epoch: int, pos: int, wait: Callable[[float], object] = time.sleep) -> Batch:
        t0, p0 = time.perf_counter(), self._paused_s()
        batch = self.fetch(self._indices(epoch, pos))
        if self.examples_per_s:
            due = self.batch_size / self.examples_per_s
            while True:  # in short waits, so that a pause started meanwhile moves the deadline
                left = t0 + due + (self._paused_s() - p0) - time.perf_counter()
                if left <= 0 or wait(min(left, 0.05)):  # the producer's wait() is True when stopping
                    break
        return batch

    def _paused_s(self) -> float:
        with self._lock:
            now = time.perf_counter()
            return self._paused_total + (now - self._paused_at if self._paused_at is not None else 0.0)

    def pause(self) -> None:
        """Hold the producer while the trainer does something that is not training (evaluation)."""
        with self._lock:
            if self._paused_at is None:
                self._paused_at = time.perf_counter()
                self._running.clear()

    def resume(self) -> None:
        with self._lock:
            if self._paused_at is not None:
                self._paused_total += time.perf_counter() - self._paused_at
                self._paused_at = None
                self._running.set()

    def _advance(self, epoch: int, pos: int) -> tuple:
        return (epoch + 1, 0) if pos + 1 == self.per_epoch else (epoch, pos + 1)

    # -- the trainer's side
    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        t0 = time.perf_counter()
        if self.background:
            self._start()
            item = self._queue.get()
            self._slots.release()  # the trainer holds it now: the producer may load one more
            if isinstance(item, _Failed):
                raise item.exc
            batch = item
        else:
            batch = self._load(self.epoch, self.pos)
        self.idle_s += time.perf_counter() - t0
        self.epoch, self.pos = self._advance(self.epoch, self.pos)
        return batch

    def ready(self) -> bool:
        """Is a fresh batch waiting? A synchronous source always has one (at a cost paid in idle_s)."""
        if not self.background:
            return True
        self._start()
        return not self._queue.empty()

    # -- the producer thread
    def _start(self) -> None:
        if self._thread is not None:
            return
        self._stop = threading.Event()
        self._queue: queue.Queue = queue.Queue()
        # A slot is a batch being loaded or waiting; the trainer frees one by taking a batch, as in
        # the simulated clock, so at most `prefetch` batches are ever ahead of the trainer.
        self._slots = threading.Semaphore(self.prefetch)
        self._thread = threading.Thread(target=self._produce, args=(self.epoch, self.pos), daemon=True,
                                        name="echo-run-pipeline")
        self._thread.start()

    def _produce(self, epoch: int, pos: int) -> None:
        try:
            while not self._stop.is_set():
                if not self._running.wait(timeout=0.1) or not self._slots.acquire(timeout=0.1):
                    continue
                batch = self._load(epoch, pos, wait=self._stop.wait)
                if self._stop.is_set():
                    return
                self._queue.put(batch)
                epoch, pos = self._advance(epoch, pos)
        except BaseException as e:  # surfaced in the trainer's thread by __next__
            self._queue.put(_Failed(e))

    def close(self) -> None:
        """Stop the producer (the next ``__next__`` starts a new one at the trainer's position)."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    # -- checkpointing: the trainer's position; batches produced ahead are simply produced again
    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos, "idle_s": self.idle_s}

    def load_state_dict(self, st: dict) -> None:
        self.close()
        self.epoch, self.pos, self.idle_s = st["epoch"], st["pos"], st["idle_s"]


def from_config(p, ds: Dataset, batch_size: int, seed: int, rank: int = 0, world: int = 1) -> BatchSource:
    """The BatchSource for echo-run's ``pipeline`` group."""
    return BatchSource(ds, batch_size, seed, rank, world, examples_per_s=p.examples_per_s,
                       background=background_on(p), prefetch=p.prefetch)
