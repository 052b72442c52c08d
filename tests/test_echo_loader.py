"""EchoLoader: echoing around a loader that a trainer iterates over; exact counts for the
deterministic policies, statistical bounds for the coin, exact continuation after a resume, and a
background thread for the adaptive policy that reports errors and never outlives its loader."""
import gc
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest
import torch
from torch.utils.data import DataLoader, Dataset
from torchdata.stateful_dataloader import StatefulDataLoader

from runner import schedules as S
from runner.echo import EchoLoader


class Ids(Dataset):
    """Examples that carry their id, as dicts (a DataLoader collates them into a dict of tensors)."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {"x": torch.full((3,), float(i)), "ids": torch.tensor(i)}


def test_batch_echoing_yields_the_loaders_own_batches_factor_times_per_pass():
    loader = DataLoader(Ids(40), batch_size=4)
    el = EchoLoader(loader, policy="batch", factor=2)
    assert len(el) == 20
    for epoch in range(2):
        out = list(el)
        assert len(out) == 20 and all(type(b) is dict for b in out)
        assert all(out[i] is out[i + 1] for i in range(0, 20, 2))
        assert Counter(int(i) for b in out for i in b["ids"]) == Counter({i: 2 for i in range(40)})
    assert (el.steps, el.example_loads, el.echo_steps, el.batch_loads) == (40, 80, 20, 20)


def test_example_echoing_uses_every_example_factor_times_per_pass():
    el = EchoLoader(DataLoader(Ids(64), batch_size=8), policy="example", factor=2, buffer=32, seed=0)
    out = list(el)
    assert Counter(int(i) for b in out for i in b["ids"]) == Counter({i: 2 for i in range(64)})
    assert len(out) == len(el) == 16 and el.example_loads == 64


def test_stochastic_constant_p_echoes_about_one_over_p_steps_per_batch():
    batches = [(torch.zeros(1, 1),) for _ in range(4000)]  # any iterable of batches with a length
    el = EchoLoader(batches, policy="stochastic", p=0.25, seed=0)
    steps = sum(1 for _ in el)
    assert len(el) == 16000 and el.batch_loads == 4000 and el.steps == steps
    # Steps per batch ~ Geometric(0.25): mean 4, sd sqrt(0.75)/0.25 = 3.46; 5 sd of the mean of 4000 = 0.27.
    assert abs(steps / 4000 - 4) < 0.27
    assert el.echo_steps == steps - 4000


def test_a_schedule_runs_over_total_loads():
    sched = S.linear(1.0, 0.2)
    batches = [(torch.zeros(2, 1),) for _ in range(50)]
    el = EchoLoader(batches, policy="stochastic", schedule=sched, total_loads=100, seed=1)
    seen = []
    for _ in range(2):  # two passes: u runs from 0 to 1 over the 100 loads
        for _ in el:
            seen.append((el.batch_loads, el.p))
    loads_before = [0] + [n for n, _ in seen[:-1]]
    assert [p for _, p in seen] == [sched(n / 100) for n in loads_before]
    assert el.batch_loads == 100
    by_epochs = EchoLoader(batches, policy="stochastic", schedule=sched, epochs=2)
    assert by_epochs.total_loads == 100 and len(by_epochs) == round(sum(1 / sched(i / 100) for i in range(50)))
    with pytest.raises(ValueError, match="total_loads"):
        EchoLoader(iter(batches), policy="stochastic", schedule=sched, epochs=2)  # no length to count epochs by
    with pytest.raises(ValueError, match="exactly one of p"):
        EchoLoader(batches, policy="stochastic")


def test_set_epoch_reaches_the_loader():
    class Loader(list):
        epochs = []

        def set_epoch(self, e):
            self.epochs.append(e)

    el = EchoLoader(Loader([(torch.zeros(1),)]), policy="batch", factor=2)
    el.set_epoch(3)
    assert Loader.epochs == [3]


def stateful(n: int = 40, batch: int = 4):
    torch.manual_seed(0)  # the loader's shuffle (StatefulDataLoader saves its own sampler's state)
    return StatefulDataLoader(Ids(n), batch_size=batch, shuffle=True)


@pytest.mark.parametrize("policy, kw", [("batch", {"factor": 2.5}), ("example", {"factor": 1.5, "buffer": 8}),
                                        ("stochastic", {"schedule": S.cosine(1.0, 0.2), "epochs": 3})])
def test_a_resumed_echo_loader_continues_an_unbroken_run_exactly(policy, kw):
    unbroken = EchoLoader(stateful(), policy, seed=3, **kw)
    full = [(b["ids"].tolist(), unbroken.p) for _ in range(3) for b in unbroken]
    first = EchoLoader(stateful(), policy, seed=3, **kw)
    it, got = iter(first), []
    for _ in range(7):  # stop mid-epoch
        got.append((next(it)["ids"].tolist(), first.p))
    st = first.state_dict()
    resumed = EchoLoader(stateful(), policy, seed=99, **kw)  # another seed: the state carries the coin
    resumed.load_state_dict(st)
    while len(got) < len(full):
        n = len(got)
        got += [(b["ids"].tolist(), resumed.p) for b in resumed]
        assert len(got) > n
    assert got == full
    assert (resumed.steps, resumed.example_loads, resumed.echo_steps) == (unbroken.steps, unbroken.example_loads,
                                                                          unbroken.echo_steps)


@pytest.mark.timeout(60)
def test_a_resumed_adaptive_loader_continues_at_the_batch_the_trainer_had_not_taken():
    """The thread reads ahead; the state holds the loader's position at the last batch the trainer
    took, so the batches read ahead are read again after a resume, none skipped."""
    fresh = lambda batches: [b for i, b in enumerate(batches) if i == 0 or b != batches[i - 1]]
    unbroken = [b["ids"].tolist() for b in EchoLoader(stateful(), "adaptive")]
    first = EchoLoader(stateful(), "adaptive", prefetch=3)
    it = iter(first)
    got = [next(it)["ids"].tolist() for _ in range(4)]
    assert wait_until(lambda: first.ready)  # the thread holds batches ahead of the trainer
    resumed = EchoLoader(stateful(), "adaptive")
    resumed.load_state_dict(first.state_dict())
    first.close()
    got += [b["ids"].tolist() for b in resumed]
    assert fresh(got) == fresh(unbroken) and len(fresh(unbroken)) == 10


# -- the adaptive policy's background thread
class Gated:
    """A loader that hands out a batch only when the test opens the gate for it."""

    def __init__(self, n: int, fail_at: int = -1):
        self.n, self.fail_at, self.gate, self.closed = n, fail_at, threading.Semaphore(0), threading.Event()

    def __len__(self):
        return self.n

    def __iter__(self):
        try:
            for i in range(self.n):
                while not self.gate.acquire(timeout=0.05):
                    pass
                if i == self.fail_at:
                    raise ValueError(f"batch {i} is corrupt")
                yield (torch.full((2, 1), float(i)),)
        finally:
            self.closed.set()


def wait_until(cond, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            return False
        time.sleep(0.005)
    return True


@pytest.mark.timeout(60)
def test_adaptive_echoes_exactly_while_the_next_batch_is_not_ready():
    loader = Gated(3)
    el = EchoLoader(loader, policy="adaptive")
    with pytest.raises(TypeError, match="no length"):
        len(el)
    it = iter(el)
    loader.gate.release()
    first = next(it)  # the first step waits for its batch
    assert not el.ready
    assert all(next(it) is first for _ in range(5))  # nothing waiting: echo
    loader.gate.release()
    assert wait_until(lambda: el.ready)
    second = next(it)
    assert int(second[0][0]) == 1 and el.echo_steps == 5 and el.example_loads == 4
    loader.gate.release()
    assert wait_until(lambda: el.ready)
    assert int(next(it)[0][0]) == 2
    assert wait_until(lambda: el.ready)  # the pass's end is waiting
    assert list(it) == [] and el.steps == 8 and el.batch_loads == 3


@pytest.mark.timeout(60)
def test_adaptive_raises_the_loaders_error_in_the_training_thread_and_stops():
    loader = Gated(5, fail_at=2)
    for _ in range(5):
        loader.gate.release()
    el = EchoLoader(loader, policy="adaptive")
    with pytest.raises(ValueError, match="batch 2 is corrupt"):
        for _ in el:
            pass
    assert el.batch_loads == 2
    assert loader.closed.wait(10)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["close", "gc"])
def test_an_abandoned_adaptive_loader_stops_its_thread(how):
    before = threading.active_count()
    loader = Gated(1000)
    for _ in range(3):
        loader.gate.release()
    el = EchoLoader(loader, policy="adaptive")
    it = iter(el)
    next(it)
    assert threading.active_count() == before + 1
    if how == "close":
        el.close()
    else:
        del it, el
        gc.collect()
    assert loader.closed.wait(10)  # the thread let go of the loader's iterator
    assert wait_until(lambda: threading.active_count() == before)


EXIT_SCRIPT = """
import itertools, sys, time, torch
from runner.echo import EchoLoader
import runner.integrations
print("imported:", sorted(m for m in ("transformers", "lightning") if m in sys.modules))

class Slow:
    def __init__(self, fail_at=-1):
        self.fail_at = fail_at

    def __iter__(self):
        for i in itertools.count():
            time.sleep(0.01)
            if i == self.fail_at:
                raise RuntimeError("the loader broke")
            yield (torch.zeros(2, 1),)

try:
    for _ in EchoLoader(Slow(fail_at=3), policy="adaptive"):
        pass
except RuntimeError as e:
    print("raised:", e)
el = EchoLoader(Slow(), policy="adaptive")
it = iter(el)
for _ in range(500):
    next(it)
print("abandoned mid-epoch, exiting")
"""


@pytest.mark.slow  # a Python with torch to start
@pytest.mark.timeout(120)
def test_nothing_hangs_at_exit():
    """A loader that raised, and one abandoned mid-epoch with its thread inside torch: the process
    exits normally (a daemon thread still running torch code at shutdown aborts it). The script is a
    user's, in a fresh Python: runner.echo and runner.integrations import no trainer library."""
    p = subprocess.run([sys.executable, "-c", EXIT_SCRIPT], capture_output=True, text=True, timeout=100)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.splitlines() == ["imported: []", "raised: the loader broke", "abandoned mid-epoch, exiting"]
