"""The input pipeline PyTorch users run: torchdata's ``StatefulDataLoader`` with worker processes that
decode and augment per example, and a feeder thread that tells the echo stage whether a fresh batch
is ready.

Order. Endless epochs; epoch ``e`` is ``DistributedSampler(seed, rank, world, drop_last=True)`` with
``set_epoch(e)``, cut into batches of ``batch_size``, the last partial batch dropped. The batch
sampler yields keys ``(epoch, index)``; when there is a transform, each example is read and
transformed with the three global generators a transform draws from - torch's, Python's ``random``
and NumPy's legacy ``np.random`` - seeded from a hash of (seed, epoch, index) (their states saved
before the batch and restored after it, as ``torch.random.fork_rng`` does for torch's), so a view never
depends on the number of workers, on timing or on a resume. Not seeded: a generator of the user's
own (``np.random.default_rng()``, a ``torch.Generator``) that the data set or transform keeps, and
CUDA's generator (transforms run on the CPU, in the workers).

Checkpoint. The position ``(epoch, pos)`` of the next batch the TRAINER takes, counted as it takes
them. It is exact because it is the only state there is: the order is a function of (seed, epoch),
the views of (seed, epoch, index), the workers and the data set wrapper hold nothing else. Restoring
sets the stateful batch sampler to that position and starts a fresh loader there, so batches that
workers or the queue had prefetched are simply loaded again. The format does not depend on the
number of workers (the StatefulDataLoader's own snapshot cannot be restored with another worker
count).

Throttle (``examples_per_s``, per rank). Inside the workers: each of N workers takes
``batch_size * N / examples_per_s`` seconds per batch (decoding included: a batch started fresh is
due that long after it starts; a worker kept busy has its deadlines exactly that far apart), so the
N together deliver ``examples_per_s`` and a slowed pipeline behaves like a slow one (workers=0: the
same, in the feeder). ``pause()``/``resume()`` (the trainer evaluates or checkpoints) act through
multiprocessing primitives shared with the workers: while paused no batch starts its clock, and the
deadline of a batch in progress moves by the paused time.

A pipeline that is slow for real (decoding, augmentation) cannot be paused: its workers finish what
they hold and keep filling the buffers. During a pause at most ``prefetch`` batches (feeder queue) +
``workers * prefetch_factor`` (the DataLoader's tasks) get ahead of the trainer, as in any PyTorch
training loop that evaluates between epochs; the trainer then finds them ready when it resumes.
"""
from __future__ import annotations

import hashlib
import logging
import math
import pickle
import queue
import random
import struct
import threading
import time
import traceback
import warnings
from contextlib import contextmanager, nullcontext
from typing import Callable, Iterator, List, Optional, Sequence

import numpy as np
import torch
import torch.multiprocessing as mp
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, TensorDataset, get_worker_info
from torch.utils.data._utils.collate import default_collate
from torchdata.stateful_dataloader import StatefulDataLoader

from .errors import ConfigError

log = logging.getLogger(__name__)
Batch = List[torch.Tensor]
JOIN_S = 30.0  # the feeder finishes at most one batch in progress before it stops


def example_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for one view of one example: a hash, so nearby (seed, epoch, index) are unrelated."""
    digest = hashlib.blake2b(struct.pack("<qqq", seed, epoch, index), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class EpochBatches(Sampler):
    """The batches of keys ``(epoch, index)`` of one epoch of this rank's shard, from position ``pos``.

    A stateful batch sampler: ``state_dict()`` is the position of the next batch it yields, and it
    moves as the loader draws (ahead of the trainer). Endless epochs come from ``set_epoch``."""

    def __init__(self, ds: Dataset, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        self.shard = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.batch_size = batch_size
        self.per_epoch = len(self.shard) // batch_size
        self.epoch, self.pos = 0, 0

    def order(self, epoch: int) -> torch.Tensor:
        """The rank's shard of epoch ``epoch``, in order (before slicing into batches)."""
        self.shard.set_epoch(epoch)
        return torch.tensor(list(self.shard), dtype=torch.long)

    def set_epoch(self, epoch: int, pos: int = 0) -> None:
        self.epoch, self.pos = epoch, pos

    def __len__(self) -> int:
        return self.per_epoch

    def __iter__(self) -> Iterator[list]:
        # A generator: nothing runs until the loader draws, so calling iter() twice (DataLoader does)
        # moves nothing.
        epoch, order, B = self.epoch, self.order(self.epoch).tolist(), self.batch_size
        while self.pos < self.per_epoch:
            p = self.pos
            self.pos += 1
            yield [(epoch, i) for i in order[p * B:(p + 1) * B]]

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, st: dict) -> None:
        self.set_epoch(int(st["epoch"]), int(st["pos"]))


class Throttle:
    """At most one batch per ``period`` seconds for each loader (worker or feeder) that applies it.

    Time is counted without pauses ("virtual" time: the clock less the paused seconds), so a pause
    moves the deadline of a batch in progress by its length. A batch started fresh is due ``period``
    after it starts; one started within ``slack`` of the loader's previous deadline (the loader is
    kept busy) is due exactly one ``period`` after that deadline, so the few milliseconds between
    batches (handing one over, taking the next task, waking up late) are absorbed instead of added:
    deadlines are always at least ``period`` apart and N loaders deliver their rate, not less.

    Shared with worker processes: the pause state lives in multiprocessing memory (the total paused
    seconds so far, the time the current pause began), an Event says "running" and another "stop"
    (``close()``); ``held`` and ``waiting`` count the batches held by a pause and those loaded and
    waiting for their deadline (what a test can observe). The previous deadline is each process's
    own (a worker's copy after fork). ``clock``/``sleep`` exist for tests."""

    def __init__(self, period: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Optional[Callable[[float], object]] = None):
        self.period = float(period)
        self.slack = min(self.period / 4, 0.05)
        self._clock = clock  # time.monotonic: one system-wide clock, the same in every worker
        self._pause = mp.Array("d", [0.0, -1.0])  # [paused seconds before the current pause, its start or -1]
        self._running, self._stop = mp.Event(), mp.Event()
        self._running.set()
        self.held = mp.Value("i", 0)  # batches waiting for a resume before they start
        self.waiting = mp.Value("i", 0)  # batches loaded, waiting for their deadline
        self._sleep = sleep
        self._due = -math.inf  # this process's previous deadline, in virtual time

    def paused_s(self) -> float:
        with self._pause.get_lock():
            total, since = self._pause[0], self._pause[1]
        return total + (self._clock() - since if since >= 0 else 0.0)

    def virtual(self) -> float:
        return self._clock() - self.paused_s()

    def pause(self) -> None:
        with self._pause.get_lock():
            if self._pause[1] < 0:
                self._pause[1] = self._clock()
                self._running.clear()

    def resume(self) -> None:
        with self._pause.get_lock():
            if self._pause[1] >= 0:
                self._pause[0] += self._clock() - self._pause[1]
                self._pause[1] = -1.0
                self._running.set()

    def stop(self) -> None:
        """Release every wait at once (closing): batches in progress finish unthrottled."""
        self._stop.set()

    def restart(self) -> None:
        """Before (re)starting loaders; workers forked after it inherit the fresh deadline."""
        self._stop.clear()
        self._due = -math.inf

    def begin(self) -> float:
        """Before loading a batch: wait out a pause (no batch starts its clock while paused); returns
        the batch's deadline in virtual time."""
        if not self._running.is_set():
            with self.held.get_lock():
                self.held.value += 1
            try:
                while not self._running.wait(0.1) and not self._stop.is_set():
                    pass
            finally:
                with self.held.get_lock():
                    self.held.value -= 1
        v = self.virtual()
        self._due = (self._due if v <= self._due + self.slack else v) + self.period
        return self._due

    def end(self, due: float) -> None:
        """After loading it: wait until its deadline (moved by any pause meanwhile)."""
        sleep = self._sleep or self._stop.wait
        with self.waiting.get_lock():
            self.waiting.value += 1
        try:
            while not self._stop.is_set():
                left = due - self.virtual()
                if left <= 0:
                    return
                sleep(min(left, 0.05))  # short waits: a pause started meanwhile moves the deadline
        finally:
            with self.waiting.get_lock():
                self.waiting.value -= 1


class _WorkerError:
    """An exception raised in a worker, carried to the trainer as data so that it is raised there as
    itself (DataLoader would re-raise ``type(e)(traceback text)``)."""

    def __init__(self, exc: BaseException, where: str, tb: str):
        self.exc, self.where, self.tb = exc, where, tb

    def raise_it(self):
        self.exc.add_note(f"(raised in {self.where}; its traceback follows)\n{self.tb}")
        raise self.exc


def _picklable(e: BaseException) -> bool:
    try:
        clone = pickle.loads(pickle.dumps(e))
    # pickle's own error, and what an exception class whose __init__ does not take its args raises
    # when it is rebuilt (TypeError), or an attribute that cannot be pickled (AttributeError...).
    except (pickle.PickleError, TypeError, AttributeError, ValueError, RuntimeError):
        return False
    return type(clone) is type(e) and str(clone) == str(e)


@contextmanager
def _python_and_numpy_rng_kept():
    """Python's and NumPy's global generators restored on exit, as ``fork_rng`` restores torch's."""
    py, npy = random.getstate(), np.random.get_state()
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(npy)


class Examples(Dataset):
    """A data set whose keys are ``(epoch, index)`` (training) or ``index`` (evaluation): item
    ``index`` of ``ds``, its input ``x`` through ``transform`` with torch's, Python's and NumPy's
    global generators seeded by (seed, epoch, index), the batch throttled. Runs in the workers."""

    def __init__(self, ds: Dataset, transform: Optional[Callable] = None, seed: int = 0,
                 throttle: Optional[Throttle] = None):
        self.ds, self.transform, self.seed, self.throttle = ds, transform, seed, throttle

    def __len__(self) -> int:
        return len(self.ds)

    def example(self, key):
        """One example, its view drawn as in a batch."""
        return self._load([key])[0]

    def _view(self, key):
        epoch, i = key if isinstance(key, tuple) else (0, key)
        # Seeded before the read too: a data set that draws its own random numbers is as reproducible.
        s = example_seed(self.seed, epoch, i)
        torch.default_generator.manual_seed(s)
        random.seed(s)
        np.random.seed(s >> 31)  # NumPy's legacy seed takes 32 bits: the hash's top ones
        item = self.ds[i]
        return (self.transform(item[0]), *item[1:])

    def _load(self, keys: Sequence):
        if self.transform is None:
            idx = [k[1] if isinstance(k, tuple) else k for k in keys]
            if hasattr(self.ds, "__getitems__"):  # the data set's batched read
                return self.ds.__getitems__(idx)
            return [self.ds[i] for i in idx]
        # The trainer's (or worker's) own random streams are left where they were. Once a batch:
        # saving and restoring torch's generator per example cost 4% of a decode-bound pipeline.
        with torch.random.fork_rng(devices=[]), _python_and_numpy_rng_kept():
            return [self._view(k) for k in keys]

    def __getitems__(self, keys: Sequence):
        try:
            due = self.throttle.begin() if self.throttle else None
            out = self._load(keys)
            if due is not None:
                self.throttle.end(due)
            return out
        # A DataLoader worker would re-raise any error of the data set or the transform as type(e)(its text).
        except Exception as e:  # any error: carried to the trainer and raised there as itself, never swallowed
            info = get_worker_info()
            if info is None or not _picklable(e):  # in-process: it reaches the caller as itself
                raise
            return _WorkerError(e, f"DataLoader worker {info.id}", traceback.format_exc())

    def __getitem__(self, key):
        return self.__getitems__([key])[0]


def _collate(data):
    if isinstance(data, _WorkerError):
        return data
    b = default_collate(data)
    return list(b) if isinstance(b, (list, tuple)) else b


def _tensor_batches(ds: TensorDataset, sampler: EpochBatches, throttle: Optional[Throttle]) -> Iterator[Batch]:
    """The fast path for in-memory tensors: one indexing op per batch, no DataLoader."""
    B = sampler.batch_size
    while True:
        epoch = sampler.epoch
        order = sampler.order(epoch)
        while sampler.pos < sampler.per_epoch:
            p = sampler.pos
            sampler.pos += 1
            due = throttle.begin() if throttle else None
            idx = order[p * B:(p + 1) * B]
            batch = [t[idx] for t in ds.tensors]
            if due is not None:
                throttle.end(due)
            yield batch
        sampler.set_epoch(epoch + 1)


class _LoaderBatches:
    """Endless batches from a StatefulDataLoader over ``Examples``, epoch after epoch."""

    def __init__(self, examples: Examples, sampler: EpochBatches, workers: int, prefetch_factor: int,
                 persistent_workers: bool, seed: int):
        self.sampler = sampler
        with warnings.catch_warnings():  # torchdata 0.11 calls torch.set_vital, deprecated in torch 2.14
            warnings.filterwarnings("ignore", message=".*set_vital.*")
            self.loader = self._loader(examples, sampler, workers, prefetch_factor, persistent_workers, seed)
        self._it = None

    @staticmethod
    def _loader(examples, sampler, workers, prefetch_factor, persistent_workers, seed) -> StatefulDataLoader:
        return StatefulDataLoader(
            examples, batch_sampler=sampler, num_workers=workers, collate_fn=_collate,
            prefetch_factor=prefetch_factor if workers else None,
            persistent_workers=persistent_workers and workers > 0, in_order=True,
            # The checkpoint is the trainer's position in the stateful batch sampler, so the loader's
            # own per-batch snapshot of its workers (about 0.1 ms of main-process CPU a batch) is off.
            snapshot_every_n_steps=None,
            # Its own generator: DataLoader draws worker base seeds from the global RNG otherwise,
            # which would move the trainer's random stream (dropout) at every epoch and restart.
            generator=torch.Generator().manual_seed(seed))

    def __iter__(self):
        return self

    def __next__(self) -> Batch:
        while True:
            if self._it is None:
                self._it = iter(self.loader)  # persistent workers: the same workers, reset
            try:
                b = next(self._it)
            except StopIteration:
                self.sampler.set_epoch(self.sampler.epoch + 1)
                self._it = None
                continue
            if isinstance(b, _WorkerError):
                b.raise_it()
            return b

    def close(self) -> None:
        # DataLoader's own shutdown (what its iterator's __del__ runs): workers leave at once, or are
        # terminated after a few seconds; not left to the garbage collector.
        its = [self._it] + ([self.loader._iterator] if self.loader._iterator is not self._it else [])
        for it in its:
            stop = getattr(it, "_shutdown_workers", None)
            if stop is not None:
                stop()
        self._it = self.loader._iterator = None


class _Failed:
    def __init__(self, exc: BaseException):
        self.exc = exc


class Source:
    """Fresh batches for the trainer (see the module's docstring); build it with ``build``."""

    def __init__(self, make: Callable[[EpochBatches], Iterator[Batch]], sampler: EpochBatches, *,
                 background: bool, prefetch: int, device: torch.device, pin_memory: bool,
                 channels_last: bool, throttle: Optional[Throttle]):
        self._make, self.sampler = make, sampler
        self.batch_size, self.per_epoch = sampler.batch_size, sampler.per_epoch
        self.background, self.prefetch = background, prefetch
        self.device, self.channels_last = device, channels_last
        self.pin_memory = pin_memory and device.type == "cuda"
        self.throttle = throttle
        self.epoch, self.pos = 0, 0  # the next batch the trainer takes
        self.idle_s = 0.0
        self._up = None
        self._thread: Optional[threading.Thread] = None
        self._error: Optional[BaseException] = None
        self._paused = False

    # -- the trainer's side
    def __iter__(self):
        return self

    def __next__(self) -> Batch:
        if self._error is not None:
            raise self._error
        if self._paused:  # a throttled batch would wait for a resume() that this thread cannot make
            raise RuntimeError("Source.__next__ during pause(): call resume() first")
        t0 = time.perf_counter()
        try:
            self._start()
            if self.background:
                item = self._queue.get()
                self._slots.release()  # the trainer holds it now: the feeder may take one more
                if isinstance(item, _Failed):
                    raise item.exc
                batch = self._adopt(*item)
            else:
                batch = self._move(next(self._up), None)[0]
        except Exception as e:  # any error: re-raised as itself, and kept so that the next call raises it too
            self._error = e  # a broken pipeline stays broken (no hang on the next call)
            raise
        finally:
            self.idle_s += time.perf_counter() - t0
        self.epoch, self.pos = (self.epoch + 1, 0) if self.pos + 1 == self.per_epoch else (self.epoch, self.pos + 1)
        return batch

    def ready(self) -> bool:
        """A fresh batch (or an error) is waiting. A synchronous source always has one, paid in idle_s."""
        if self._error is not None or not self.background:
            return True
        self._start()
        return not self._queue.empty()

    def pause(self) -> None:
        """Not training time (evaluation, checkpoint): hold the throttle; real decoding goes on up
        to the prefetch depth (see the module's docstring)."""
        self._paused = True
        if self.throttle:
            self.throttle.pause()

    def resume(self) -> None:
        self._paused = False
        if self.throttle:
            self.throttle.resume()

    def close(self) -> None:
        """Stop the feeder and the workers (the next ``__next__`` starts again at the trainer's position)."""
        if self._thread is not None:
            self._stop.set()
        if self.throttle:
            self.throttle.stop()  # a worker asleep in the throttle returns its batch now
        if self._thread is not None:
            self._thread.join(JOIN_S)
            if self._thread.is_alive():
                log.warning("the pipeline's feeder did not stop within %.0f s (a batch still loading); "
                            "shutting its workers down anyway", JOIN_S)
        if self._up is not None and hasattr(self._up, "close"):
            self._up.close()
        self._up, self._thread, self._error = None, None, None

    # -- checkpointing: the trainer's position (batches prefetched ahead are loaded again)
    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos, "idle_s": self.idle_s}

    def load_state_dict(self, st: dict) -> None:
        self.close()
        if not 0 <= int(st["pos"]) < self.per_epoch:
            raise ConfigError(f"the checkpoint's pipeline position {st['pos']} is outside an epoch of "
                              f"{self.per_epoch} batches: it was written with another batch size or data "
                              "set. Resume with the checkpoint's own configuration.")
        self.epoch, self.pos, self.idle_s = int(st["epoch"]), int(st["pos"]), float(st["idle_s"])

    # -- the feeder
    def _start(self) -> None:
        if self._up is not None:
            return
        if self.throttle:
            self.throttle.restart()
        self.sampler.set_epoch(self.epoch, self.pos)
        self._up = self._make(self.sampler)
        if not self.background:
            return
        self._stop = threading.Event()
        self._queue: queue.Queue = queue.Queue()
        # A slot is a batch taken from the loader and not yet by the trainer: at most `prefetch`.
        self._slots = threading.Semaphore(self.prefetch)
        stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        self._thread = threading.Thread(target=self._feed, args=(self._up, stream, self._stop, self._queue,
                                                                 self._slots), daemon=True, name="echo-run-feeder")
        self._thread.start()

    def _feed(self, up, stream, stop: threading.Event, q: queue.Queue, slots: threading.Semaphore) -> None:
        try:
            while not stop.is_set():
                if not slots.acquire(timeout=0.1):
                    continue
                batch = next(up)
                if stop.is_set():
                    return
                q.put(self._move(batch, stream))
        except Exception as e:  # any error of the loader: raised as itself in the trainer's thread by __next__
            if not stop.is_set():
                q.put(_Failed(e))

    def _move(self, batch: Batch, stream) -> tuple:
        """Pin, copy to the device (on ``stream``, asynchronously) and lay images out channels_last."""
        dev, fmt = self.device, torch.channels_last if self.channels_last else None

        def one(t):
            if not torch.is_tensor(t):
                return t
            if self.pin_memory and not t.is_pinned():
                t = t.pin_memory()
            if t.device != dev:
                t = t.to(dev, non_blocking=dev.type == "cuda")
            return t.contiguous(memory_format=fmt) if fmt is not None and t.dim() == 4 else t

        with torch.cuda.stream(stream) if stream is not None else nullcontext():
            out = [one(t) for t in batch]
            if stream is None:
                return out, None
            done = torch.cuda.Event()
            done.record(stream)
        return out, done

    def _adopt(self, batch: Batch, done) -> Batch:
        """The trainer's stream waits for the side stream's copy; the caching allocator is told the
        tensors are used there (so their memory is not reused while the trainer still reads it)."""
        if done is not None:
            cur = torch.cuda.current_stream(self.device)
            cur.wait_event(done)
            for t in batch:
                if torch.is_tensor(t):
                    t.record_stream(cur)
        return batch


def _check(name: str, value, ok: bool, what: str) -> None:
    if not ok:
        raise ConfigError(f"{name}={value!r} is invalid: {what}.")


def build(train_ds: Dataset, transform: Optional[Callable], *, batch_size: int, seed: int, rank: int = 0,
          world: int = 1, workers: int = 0, prefetch_factor: int = 2, pin_memory: bool = False,
          persistent_workers: bool = True, examples_per_s: Optional[float] = None, prefetch: int = 2,
          background: Optional[bool] = None, device=torch.device("cpu"), channels_last: bool = False) -> Source:
    """The training Source for one rank: see the module's docstring."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:  # the feeder thread's current device is 0
        device = torch.device("cuda", torch.cuda.current_device())
    _check("data.batch_size", batch_size, batch_size >= 1, "give a positive number of examples per batch")
    _check("data.workers", workers, workers >= 0, "give 0 (load in the main process) or more worker processes")
    _check("data.prefetch_factor", prefetch_factor, workers == 0 or (prefetch_factor or 0) >= 1,
           "give at least 1 batch per worker")
    _check("pipeline.prefetch", prefetch, prefetch >= 1, "give at least 1 batch")
    _check("pipeline.examples_per_s", examples_per_s, examples_per_s is None or examples_per_s > 0,
           "give a positive rate, or null for an unthrottled pipeline")
    sampler = EpochBatches(train_ds, batch_size, seed, rank, world)
    if sampler.per_epoch == 0:
        raise ConfigError(f"data.batch_size={batch_size} is larger than this rank's shard of "
                          f"{len(sampler.shard)} training examples: lower data.batch_size.")
    bg = bool(background) if background is not None else (examples_per_s is not None or workers > 0)
    if bg and workers == 0 and transform is not None:
        raise ConfigError(
            "a random train transform with data.workers=0 cannot run in a background thread: it would "
            "share torch's global random generator with the trainer, so views and dropout would depend "
            "on timing. Set data.workers to 1 or more (the transform then runs in worker processes), "
            "or pipeline.background=false.")
    throttle = None
    if examples_per_s is not None:
        throttle = Throttle(batch_size * max(workers, 1) / examples_per_s)  # each of N delivers 1/N

    if isinstance(train_ds, TensorDataset) and transform is None and workers == 0:
        make = lambda s: _tensor_batches(train_ds, s, throttle)
    else:
        examples = Examples(train_ds, transform, seed, throttle)
        make = lambda s: _LoaderBatches(examples, s, workers, prefetch_factor, persistent_workers, seed)
    return Source(make, sampler, background=bg, prefetch=int(prefetch), device=device, pin_memory=pin_memory,
                  channels_last=channels_last, throttle=throttle)


def eval_batches(test_ds: Dataset, batch_size: int, workers: int = 0, device=torch.device("cpu"),
                 pin_memory: bool = False) -> Iterator[Batch]:
    """The test set in order, in batches of ``batch_size`` (the last one partial), on ``device``.
    In-memory tensors are sliced (no DataLoader, whatever ``workers``); other data sets go through a
    DataLoader with ``workers`` processes, an exception in one raised here as itself."""
    device = torch.device(device)
    nb = device.type == "cuda"
    if isinstance(test_ds, TensorDataset):
        for i in range(0, len(test_ds), batch_size):
            yield [t[i:i + batch_size].to(device, non_blocking=nb) for t in test_ds.tensors]
        return
    loader = DataLoader(Examples(test_ds), batch_size=batch_size, shuffle=False, num_workers=workers,
                        collate_fn=_collate, pin_memory=pin_memory and nb,
                        generator=torch.Generator().manual_seed(0))  # leaves the global RNG alone
    it = iter(loader)
    try:
        for b in it:
            if isinstance(b, _WorkerError):
                b.raise_it()
            yield [t.to(device, non_blocking=nb) if torch.is_tensor(t) else t for t in b]
    finally:  # stopped early (an exception, a break): the workers leave now
        stop = getattr(it, "_shutdown_workers", None)
        if stop is not None:
            stop()
