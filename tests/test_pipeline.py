"""The real input pipeline: a background producer with the same batches as the synchronous one,
resumable, bounded by its prefetch depth, slowed for real; idle time under plain SGD vs adaptive."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from runner.pipeline import BatchSource

from .conftest import run_inproc


def dataset(n: int = 100) -> TensorDataset:
    return TensorDataset(torch.arange(n).float().unsqueeze(1), torch.arange(n))


def take(src: BatchSource, n: int) -> list:
    return [next(src)[1].tolist() for _ in range(n)]


def test_background_gives_the_synchronous_batches_across_epochs():
    ds = dataset()  # 100 examples, batch 16: 6 batches per epoch, 4 dropped
    sync = take(BatchSource(ds, 16, seed=3), 20)
    bg = BatchSource(ds, 16, seed=3, background=True, prefetch=3)
    assert take(bg, 20) == sync
    bg.close()
    assert all(len(set(b)) == 16 for b in sync)
    # Each epoch is a permutation of its shard; epochs differ.
    assert len(set(sum(sync[:6], []))) == 96 and sync[:6] != sync[6:12]


def test_resume_continues_exactly(tmp_path: Path):
    ds = dataset()
    ref = take(BatchSource(ds, 16, seed=1, background=True), 15)
    a = BatchSource(ds, 16, seed=1, background=True, prefetch=4)
    first = take(a, 8)
    time.sleep(0.05)  # let the producer run ahead: batches it made but the trainer never took
    state = a.state_dict()
    a.close()
    b = BatchSource(ds, 16, seed=1, background=True, prefetch=4)
    b.load_state_dict(state)
    assert first + take(b, 7) == ref
    b.close()


def test_ready_and_prefetch_bound_with_a_slow_producer():
    per_batch = 0.4  # seconds: generous, so a busy machine cannot blur ready()
    src = BatchSource(dataset(), 10, seed=0, examples_per_s=10 / per_batch, background=True, prefetch=2)
    t0 = time.perf_counter()
    next(src)
    assert time.perf_counter() - t0 >= per_batch * 0.95  # the first batch is really slow
    assert not src.ready()  # the next one is still loading
    time.sleep(4 * per_batch)
    assert src.ready()
    # At most `prefetch` batches ahead of the trainer, however long it waits.
    assert src._queue.qsize() == 2
    idle = src.idle_s
    next(src)
    next(src)
    assert src.idle_s - idle < per_batch / 4  # both were waiting: no idle time
    src.close()


def test_synchronous_slow_source_counts_its_waiting_as_idle():
    src = BatchSource(dataset(), 10, seed=0, examples_per_s=10 / 0.05)
    t0 = time.perf_counter()
    take(src, 6)
    assert src.idle_s >= 6 * 0.05 * 0.95
    assert src.idle_s <= time.perf_counter() - t0


def test_producer_errors_reach_the_trainer():
    class Broken(torch.utils.data.Dataset):
        def __len__(self):
            return 40

        def __getitem__(self, i):
            raise OSError("disk gone")

    src = BatchSource(Broken(), 8, seed=0, background=True)
    with pytest.raises(OSError, match="disk gone"):
        next(src)
    src.close()


def test_slow_pipeline_idles_plain_sgd_and_not_adaptive(tmp_path: Path):
    """Loading a batch of 32 takes 0.2 s, far longer than a step of the small CNN."""
    slow = ("pipeline.examples_per_s=160", "eval.every_loads=100000", "model.width=8")
    sgd, _ = run_inproc(tmp_path / "sgd", "schedule=none", "budget.steps=12", *slow)
    ada, _ = run_inproc(tmp_path / "ada", "echo=adaptive", "budget.steps=60", *slow)
    s, a = sgd[-1], ada[-1]
    assert s["sim_s"] is None and s["idle_s"] == s["real_idle_s"]  # no profile: idle is measured
    assert s["idle_s"] > 1.0  # 12 waits of ~0.2 s less the compute
    assert a["idle_s"] < 0.5  # the first batch only (0.2 s)
    steps_per_batch = lambda r: r["step"] / (r["example_loads"] / 32)
    assert steps_per_batch(s) == 1
    assert steps_per_batch(a) > 1.5
    assert a["echo_steps"] == a["step"] - a["example_loads"] // 32


def test_pause_holds_the_producer():
    """While the trainer evaluates, the pipeline must not get ahead (evaluation is not training time)."""
    per_batch = 0.3
    src = BatchSource(dataset(), 10, seed=0, examples_per_s=10 / per_batch, background=True, prefetch=2)
    next(src)
    src.pause()
    time.sleep(3 * per_batch)
    assert not src.ready()  # the batch being loaded when the pause began is still not done
    src.resume()
    t0 = time.perf_counter()
    next(src)
    assert time.perf_counter() - t0 >= per_batch * 0.5
    src.close()
