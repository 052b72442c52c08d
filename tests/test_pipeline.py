"""runner.pipeline: the StatefulDataLoader pipeline. Views independent of workers, DistributedSampler's order,
exact resume mid-epoch with workers, ready() and the prefetch bound, the throttle and its pause,
worker errors raised as themselves, prompt close."""
from __future__ import annotations

import time

import pytest
import torch
import torch.multiprocessing as mp
from torch.utils.data import Dataset, DistributedSampler, TensorDataset
from torchvision.transforms import v2

from runner.errors import ConfigError
from runner.pipeline import EpochBatches, Throttle, build, eval_batches

TRANSFORM = v2.Compose([v2.RandomResizedCrop(8, antialias=True), v2.RandomHorizontalFlip(),
                        v2.ToDtype(torch.float32, scale=True)])


class Images(Dataset):
    """n small uint8 images (x, label=index); counts loaded examples in memory shared with workers."""

    def __init__(self, n: int = 40):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randint(0, 256, (n, 3, 12, 12), dtype=torch.uint8, generator=g)
        self.count = mp.Value("i", 0)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        with self.count.get_lock():
            self.count.value += 1
        return self.x[i], i


class Broken(Images):
    MESSAGE = "data.root: cannot read image /data/cats/0007.jpg (truncated JPEG). Remove or replace the file."

    def __getitem__(self, i):
        if i == 7:
            raise ConfigError(self.MESSAGE)
        return super().__getitem__(i)


class Recording(Images):
    """Blocks until ``gate`` opens; records, per example, how many batches the trainer had taken."""

    def __init__(self, n: int):
        super().__init__(n)
        self.gate, self.taken = mp.Event(), mp.Value("i", 0)
        self.seen = mp.Array("i", [-1] * n)

    def __getitem__(self, i):
        if not self.gate.wait(20):
            raise RuntimeError("gate never opened")
        self.seen[i] = self.taken.value
        return super().__getitem__(i)


def wait_until(cond, timeout: float = 15.0) -> bool:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            return False
        time.sleep(0.005)
    return True


def take(src, n: int) -> list:
    return [next(src) for _ in range(n)]


def same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(len(x) == len(y) and all(torch.equal(s, t) for s, t in zip(x, y))
                                    for x, y in zip(a, b))


@pytest.mark.timeout(60)
def test_views_do_not_depend_on_workers_and_leave_the_global_rng_alone():
    ds = Images(40)  # batch 8: 5 batches per epoch; 12 batches cross two epoch boundaries
    torch.manual_seed(5)
    expected_rng = torch.rand(4)
    torch.manual_seed(5)
    sync = build(ds, TRANSFORM, batch_size=8, seed=1, workers=0)  # transforms on this very thread
    a = take(sync, 12)
    assert torch.equal(torch.rand(4), expected_rng)  # fork_rng: the trainer's stream did not move
    assert not sync.background
    torch.manual_seed(5)
    two = build(ds, TRANSFORM, batch_size=8, seed=1, workers=2, prefetch_factor=1)
    assert two.background
    b = take(two, 12)
    two.close()
    assert torch.equal(torch.rand(4), expected_rng)  # DataLoader's seeds came from its own generator
    assert same(a, b)
    assert a[0][0].shape == (8, 3, 8, 8) and a[0][0].dtype == torch.float32
    # Each epoch a new view of every example: the seed includes the epoch.
    first = {int(i): x for xb, yb in a[:5] for x, i in zip(xb, yb)}
    second = {int(i): x for xb, yb in a[5:10] for x, i in zip(xb, yb)}
    assert first.keys() == second.keys() and len(first) == 40
    assert sum(not torch.equal(first[i], second[i]) for i in first) >= 36


class Jittered(Images):
    """A data set that draws its own random numbers in __getitem__ (noise added as it reads)."""

    def __getitem__(self, i):
        x, i = super().__getitem__(i)
        return (x.float() + torch.rand(x.shape)), i


@pytest.mark.timeout(60)
def test_a_data_sets_own_random_draws_are_seeded_per_example_too():
    ds = Jittered(40)
    sync = build(ds, TRANSFORM, batch_size=8, seed=1, workers=0)
    a = take(sync, 7)
    two = build(ds, TRANSFORM, batch_size=8, seed=1, workers=2, prefetch_factor=1)
    b = take(two, 7)
    two.close()
    assert same(a, b)  # the read's noise as well as the view: a function of (seed, epoch, index)


def three_generators(x: torch.Tensor) -> torch.Tensor:
    """A user's transform that draws from torch's, Python's and NumPy's global generators (one each)."""
    import random

    import numpy as np

    return x.float() + torch.rand(()) + random.random() + float(np.random.rand())


@pytest.mark.timeout(60)
def test_views_drawn_from_python_and_numpy_random_are_seeded_per_example_too():
    import random

    import numpy as np

    ds = Images(40)  # batch 8: 5 batches per epoch; 7 batches cross an epoch boundary
    random.seed(11)
    np.random.seed(11)
    py, npy = random.random(), np.random.rand()
    random.seed(11)
    np.random.seed(11)
    a = take(build(ds, three_generators, batch_size=8, seed=1, workers=0), 7)
    assert (random.random(), np.random.rand()) == (py, npy)  # the caller's streams did not move
    kw = dict(batch_size=8, seed=1, workers=2, prefetch_factor=1)
    two = build(ds, three_generators, **kw)
    b = take(two, 3)
    state = two.state_dict()
    two.close()
    resumed = build(ds, three_generators, **kw)
    resumed.load_state_dict(state)
    b += take(resumed, 4)
    resumed.close()
    assert same(a, b)  # 0 or 2 workers, unbroken or resumed: the same views
    # Not vacuous: each example's three draws (the view less its pixels) differ between examples and epochs.
    noise = {(e, int(i)): float(v[0, 0, 0] - ds.x[int(i)][0, 0, 0]) for e, bs in ((0, a[:5]), (1, a[5:]))
             for xb, yb in bs for v, i in zip(xb, yb)}
    assert len(set(noise.values())) == len(noise) == 56


@pytest.mark.timeout(60)
@pytest.mark.parametrize("world,rank", [(1, 0), (2, 1)])
def test_batches_are_distributed_sampler_epochs(world, rank):
    ds = TensorDataset(torch.randn(100, 3), torch.arange(100))  # shard 100/world, batch 16
    n = 3 * (100 // world // 16) + 2
    ref = reference_batches(ds, 16, 3, n, rank, world)
    fast = build(ds, None, batch_size=16, seed=3, rank=rank, world=world)
    loader = build(ds, None, batch_size=16, seed=3, rank=rank, world=world, workers=2)
    assert same(take(fast, n), ref)
    assert same(take(loader, n), ref)
    loader.close()
    # ... which are DistributedSampler's epochs, cut into batches, the last partial one dropped.
    sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=3, drop_last=True)
    per_epoch = len(sampler) // 16
    sampler.set_epoch(1)
    order = list(sampler)
    assert [b[1].tolist() for b in ref[per_epoch:2 * per_epoch]] == \
        [order[p * 16:(p + 1) * 16] for p in range(per_epoch)]


@pytest.mark.timeout(90)
@pytest.mark.parametrize("k", [3, 4, 5, 7])  # mid-epoch, the last batch of an epoch, its boundary, epoch 1
def test_resume_gives_the_unbroken_batches(k):
    ds = Images(40)
    kw = dict(batch_size=8, seed=2, workers=2, prefetch=3, prefetch_factor=2)
    ref_src = build(ds, TRANSFORM, **kw)
    ref = take(ref_src, 13)
    ref_src.close()
    ds.count.value = 0
    a = build(ds, TRANSFORM, **kw)
    first = take(a, k)
    # The pipeline really is ahead of the trainer (queue and workers) when the state is taken.
    assert wait_until(lambda: ds.count.value >= (k + 3) * 8)
    state = a.state_dict()
    assert (state["epoch"], state["pos"]) == divmod(k, 5)
    a.close()
    b = build(ds, TRANSFORM, **kw)
    b.load_state_dict(state)
    assert same(first + take(b, 13 - k), ref)
    b.close()
    # The position does not depend on the worker count: resume into a synchronous, worker-less source.
    c = build(ds, TRANSFORM, **dict(kw, workers=0))
    c.load_state_dict(state)
    assert same(take(c, 13 - k), ref[k:])


@pytest.mark.timeout(60)
def test_ready_and_the_prefetch_bound():
    ds = Recording(200)  # batch 4: 50 batches per epoch
    W, pf, prefetch = 2, 2, 3
    bound = prefetch + W * pf  # batches that may be ahead of the trainer
    src = build(ds, None, batch_size=4, seed=0, workers=W, prefetch_factor=pf, prefetch=prefetch)
    assert not src.ready()  # starts the pipeline; nothing can be loaded while the gate is shut
    ds.gate.set()
    assert wait_until(src.ready)
    order = EpochBatches(ds, 4, seed=0).order(0).tolist()
    batch_of = {i: m for m, i in ((p // 4, i) for p, i in enumerate(order))}
    ref = reference_batches(TensorDataset(ds.x, torch.arange(200)), 4, 0, 12)
    got = []
    for k in range(12):
        # The pipeline fills up to its bound while the trainer holds k batches ...
        assert wait_until(lambda: ds.count.value >= (k + bound) * 4), (k, ds.count.value)
        ds.taken.value = k + 1  # set before next(): no request can be recorded with too small a count
        got.append(next(src))
        if k in (3, 7):  # a pause does not change what comes next
            src.pause()
            src.resume()
    src.close()
    assert same(got, ref)
    # ... and never beyond it: batch m was requested only once the trainer had taken m - bound + 1.
    lead = [batch_of[i] - ds.seen[i] for i in range(200) if ds.seen[i] >= 0]
    assert max(lead) == bound - 1


@pytest.mark.timeout(30)
def test_throttle_period_pause_and_deadline():
    # Each of N workers takes batch_size * N / examples_per_s per batch: N together deliver the rate.
    ds = TensorDataset(torch.zeros(64, 1), torch.arange(64))
    for workers, period in [(0, 0.008), (1, 0.008), (2, 0.016), (4, 0.032)]:
        src = build(ds, None, batch_size=8, seed=0, workers=workers, examples_per_s=1000)
        assert src.throttle.period == pytest.approx(period) and src.background
    assert build(ds, None, batch_size=8, seed=0).throttle is None

    now = [0.0]
    events = {0.5: "pause", 2.5: "resume"}  # fake time -> what the trainer does then
    th = Throttle(1.0, clock=lambda: now[0], sleep=lambda dt: advance(dt))

    def advance(dt):
        nxt = min([t for t in events if t > now[0]] + [now[0] + dt])
        now[0] = min(now[0] + dt, nxt)
        if now[0] in events:
            getattr(th, events.pop(now[0]))()

    due = th.begin()
    now[0] += 0.2  # loading took 0.2 s
    th.end(due)
    assert now[0] == pytest.approx(3.0)  # the 1 s deadline moved by the 2 s pause
    due = th.begin()  # at once: due one period after the previous deadline
    now[0] += 1.5  # a batch slower than the throttle for real is not slowed further
    th.end(due)
    assert now[0] == pytest.approx(4.5)
    due = th.begin()  # 0.5 s after its deadline: a fresh start, due a full period later
    th.end(due)
    assert now[0] == pytest.approx(5.5)
    now[0] += 0.01  # handing the batch over took 10 ms: absorbed, the deadlines stay 1 s apart
    due = th.begin()
    th.end(due)
    assert now[0] == pytest.approx(6.5)
    th.restart()  # a restarted pipeline starts fresh
    due = th.begin()
    th.end(due)
    assert now[0] == pytest.approx(7.5)


@pytest.mark.timeout(60)
def test_pause_holds_the_workers_and_changes_no_batch():
    ds = Images(40)
    ref = take(build(ds, TRANSFORM, batch_size=8, seed=4, workers=0), 8)
    ds.count.value = 0
    src = build(ds, TRANSFORM, batch_size=8, seed=4, workers=2, examples_per_s=4000)
    src.pause()
    assert not src.ready()  # starts the workers: each takes a task and waits for the resume
    assert wait_until(lambda: src.throttle.held.value == 2)
    assert ds.count.value == 0  # no batch started while paused
    src.resume()
    got = take(src, 3)
    src.pause()
    with pytest.raises(RuntimeError, match="resume"):  # not a hang
        next(src)
    src.resume()
    got += take(src, 5)
    src.close()
    assert same(got, ref)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("workers", [0, 2])
def test_a_worker_error_reaches_the_trainer_as_itself(workers):
    src = build(Broken(40), None, batch_size=8, seed=0, workers=workers)
    with pytest.raises(ConfigError) as e:
        take(src, 5)  # example 7 is in one of the first epoch's batches
    assert str(e.value) == Broken.MESSAGE
    with pytest.raises(ConfigError):  # the source stays broken, it does not hang
        next(src)
    assert src.ready()
    src.close()
    with pytest.raises(ConfigError) as e:
        list(eval_batches(Broken(40), 16, workers=workers))
    assert str(e.value) == Broken.MESSAGE


@pytest.mark.timeout(30)
def test_close_is_prompt_while_workers_are_throttled():
    ds = Images(40)
    src = build(ds, None, batch_size=8, seed=0, workers=2, examples_per_s=0.2)  # 80 s per worker batch
    assert not src.ready()
    # Both workers loaded a batch and wait out their own 80 s at once (each delivers 1/N of the rate),
    assert wait_until(lambda: src.throttle.waiting.value == 2)
    assert ds.count.value == 16
    assert not src.ready()  # so nothing is ready: batches come in order and batch 0 is throttled
    src.close()  # the timeout fails this test if close waited for the throttle
    assert not src.ready()  # restarts at the trainer's position ...
    src.close()


def test_eval_batches_in_order():
    x, y = torch.randn(10, 2), torch.arange(10)
    got = list(eval_batches(TensorDataset(x, y), 4))
    assert [b[1].tolist() for b in got] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert torch.equal(torch.cat([b[0] for b in got]), x)
    ds = Images(10)
    got = list(eval_batches(ds, 4, workers=2))
    assert [b[1].tolist() for b in got] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert torch.equal(torch.cat([b[0] for b in got]), ds.x)


def test_bad_settings_are_config_errors():
    ds = TensorDataset(torch.zeros(10, 1))
    with pytest.raises(ConfigError, match="data.batch_size=16 is larger"):
        build(ds, None, batch_size=16, seed=0)
    with pytest.raises(ConfigError, match="data.workers to 1 or more"):
        build(ds, TRANSFORM, batch_size=2, seed=0, examples_per_s=10.0)
    with pytest.raises(ConfigError, match="pipeline.examples_per_s"):
        build(ds, None, batch_size=2, seed=0, examples_per_s=0)
    src = build(ds, None, batch_size=2, seed=0)
    with pytest.raises(ConfigError, match="another batch size"):
        src.load_state_dict({"epoch": 0, "pos": 5, "idle_s": 0.0})


def test_batches_arrive_laid_out_for_the_device():
    ds = TensorDataset(torch.randn(16, 3, 4, 4), torch.arange(16))
    for background in (False, True):
        src = build(ds, None, batch_size=4, seed=0, channels_last=True, background=background)
        x, y = next(src)
        src.close()
        assert x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        assert y.dim() == 1 and x.device.type == "cpu"


def reference_batches(ds, batch_size: int, seed: int, n: int, rank: int = 0, world: int = 1) -> list:
    """What echo-run has always trained on: DistributedSampler's epochs (seed + epoch) cut into batches,
    the last partial one dropped, the tensors gathered by index."""
    sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True)
    out, epoch = [], 0
    while len(out) < n:
        sampler.set_epoch(epoch)
        idx = list(sampler)
        for b in range(len(idx) // batch_size):
            out.append([t[torch.tensor(idx[b * batch_size:(b + 1) * batch_size])] for t in ds.tensors])
        epoch += 1
    return out[:n]


class SlowEvalNet(torch.nn.Module):
    """A linear classifier whose evaluation forward takes 0.5 s (the digits test set is one evaluation
    batch); its training forward is instant."""

    def __init__(self, in_channels: int = 1, image_size: int = 8, num_classes: int = 10):
        super().__init__()
        self.fc = torch.nn.Linear(in_channels * image_size ** 2, num_classes)

    def forward(self, x):
        if not self.training:
            time.sleep(0.5)
        return self.fc(x.flatten(1))


@pytest.mark.timeout(60)
@pytest.mark.serial
def test_the_step_0_evaluation_pauses_a_throttled_pipeline_like_every_other(tmp_path):
    """A pipeline throttled to 0.1 s a batch does not load ahead while step 0 evaluates (0.5 s): plain
    SGD then waits for each of its 4 batches (at least 0.35 s in all). Loading during that evaluation
    would have made the first 2 (the feeder's prefetch) ready, about 0.2 s of waiting in all."""
    from tests.conftest import run_inproc

    recs, _ = run_inproc(tmp_path, "model._target_=tests.test_pipeline.SlowEvalNet", "~model.width",
                         "schedule=none", "budget.steps=4", "eval.every_loads=null", "data.batch_size=8",
                         "pipeline.examples_per_s=80", "checkpoint.enabled=false")
    end = recs[-1]
    assert end["step"] == 4 and end["echo_steps"] == 0
    assert end["real_idle_s"] >= 0.35, end["real_idle_s"]
