"""The upstream input pipeline: an endless, resumable stream of fresh batches of one rank's shard.

Epoch orders come from ``DistributedSampler`` (seed + epoch, the rank's shard, the last partial batch
dropped), so the position ``(epoch, batch)`` is all a checkpoint needs to continue exactly.
"""
from __future__ import annotations

import time
from typing import Callable, Iterator, List, Optional, Sequence

import torch
from torch.utils.data import Dataset, DistributedSampler, TensorDataset
from torch.utils.data._utils.collate import default_collate

Batch = Sequence[torch.Tensor]


def fetcher(ds: Dataset) -> Callable[[List[int]], Batch]:
    """Gather a batch by indices: one indexing op for in-memory tensors, else collate the items."""
    if isinstance(ds, TensorDataset):
        return lambda idx: [t[idx] for t in ds.tensors]
    return lambda idx: default_collate([ds[i] for i in idx])


class BatchSource:
    """Fresh batches of ``batch_size`` from ``ds`` for ``rank`` of ``world``, epoch after epoch.

    ``examples_per_s`` slows the stream for real (sleeping as a slow disk or decoder would); the time
    the trainer spends waiting in ``__next__`` is ``idle_s``.
    """

    def __init__(self, ds: Dataset, batch_size: int, seed: int, rank: int = 0, world: int = 1,
                 examples_per_s: Optional[float] = None):
        self.sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.batch_size = batch_size
        self.per_epoch = len(self.sampler) // batch_size
        if self.per_epoch == 0:
            raise ValueError(f"data.batch_size={batch_size} is larger than this rank's shard of "
                             f"{len(self.sampler)} training examples: lower data.batch_size.")
        self.fetch = fetcher(ds)
        self.examples_per_s = examples_per_s
        self.epoch, self.pos = 0, 0
        self._order: Optional[List[int]] = None
        self.idle_s = 0.0

    def _indices(self) -> List[int]:
        if self._order is None:
            self.sampler.set_epoch(self.epoch)
            self._order = list(self.sampler)
        return self._order[self.pos * self.batch_size:(self.pos + 1) * self.batch_size]

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        t0 = time.perf_counter()
        batch = self.fetch(self._indices())
        if self.examples_per_s:
            time.sleep(max(0.0, self.batch_size / self.examples_per_s - (time.perf_counter() - t0)))
        self.idle_s += time.perf_counter() - t0
        self.pos += 1
        if self.pos == self.per_epoch:
            self.epoch, self.pos, self._order = self.epoch + 1, 0, None
        return batch

    def ready(self) -> bool:
        return True  # a synchronous source always has its next batch (at a cost paid in idle_s)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos, "idle_s": self.idle_s}

    def load_state_dict(self, st: dict) -> None:
        self.epoch, self.pos, self.idle_s, self._order = st["epoch"], st["pos"], st["idle_s"], None
