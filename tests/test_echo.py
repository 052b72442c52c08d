"""The echo stage on its own: exact counts for the deterministic policies, statistical bounds for
the stochastic coin."""
import math
from collections import Counter

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from runner import schedules as S
from runner.echo import EchoStream


def tagged(n_batches: int, batch: int = 4):
    """Finite upstream whose examples carry their id, so reuse can be counted."""
    for b in range(n_batches):
        ids = torch.arange(b * batch, (b + 1) * batch)
        yield [ids.float().unsqueeze(1), ids]


def endless(batch: int = 4):
    b = 0
    while True:
        ids = torch.arange(b * batch, (b + 1) * batch)
        yield [ids.float().unsqueeze(1), ids]
        b += 1


def test_none_never_echoes():
    s = EchoStream(endless(), "stochastic", S.none(), seed=3)
    steps = [s.next(i / 500) for i in range(500)]
    assert all(st.fresh for st in steps)
    assert sum(st.loaded for st in steps) == 500 * 4


def test_first_step_always_loads_even_with_tiny_p():
    s = EchoStream(endless(), "stochastic", S.constant(1e-9), seed=0)
    assert s.next(0.0).fresh
    assert not any(s.next(0.0).fresh for _ in range(50))


def test_constant_quarter_gives_about_four_steps_per_fresh_batch():
    n = 20000
    s = EchoStream(endless(), "stochastic", S.constant(0.25), seed=1)
    fresh = sum(s.next(i / n).fresh for i in range(n))
    # Binomial(n, 0.25): sd of the fraction is 0.0031; 5 sd = 0.0153 around 0.25.
    assert abs(fresh / n - 0.25) < 0.0153
    assert 3.75 < n / fresh < 4.27


@pytest.mark.parametrize("sched", [S.cosine(1.0, 0.1), S.linear(0.9, 0.2), S.step(1.0, 0.5, [0.3, 0.6])])
def test_load_fraction_matches_mean_schedule(sched):
    n = 20000
    s = EchoStream(endless(), "stochastic", sched, seed=2)
    ps = [sched(i / n) for i in range(n)]
    fresh = sum(s.next(i / n).fresh for i in range(n))
    mean = sum(ps) / n
    sd = math.sqrt(sum(p * (1 - p) for p in ps)) / n  # independent Bernoulli draws
    assert abs(fresh / n - mean) < 5 * sd + 1.0 / n  # 5 sd, plus the forced first load


def test_same_seed_same_coins_different_seed_differs():
    a = EchoStream(endless(), "stochastic", S.constant(0.5), seed=7)
    b = EchoStream(endless(), "stochastic", S.constant(0.5), seed=7)
    c = EchoStream(endless(), "stochastic", S.constant(0.5), seed=8)
    sa = [a.next(0).fresh for _ in range(200)]
    assert sa == [b.next(0).fresh for _ in range(200)]
    assert sa != [c.next(0).fresh for _ in range(200)]


def test_batch_echoing_uses_every_batch_exactly_factor_times():
    s = EchoStream(tagged(30), "batch", factor=3, seed=0)
    uses = Counter(int(st.batch[1][0]) for st in s)
    assert len(uses) == 30 and set(uses.values()) == {3}


def test_fractional_batch_factor_mixes_floor_and_ceil():
    s = EchoStream(tagged(4000), "batch", factor=2.5, seed=0)
    uses = Counter(int(st.batch[1][0]) for st in s)
    assert set(uses.values()) == {2, 3}
    # Bernoulli(0.5) extra use per batch: sd of the mean is 0.0079; 5 sd = 0.04.
    assert abs(sum(uses.values()) / len(uses) - 2.5) < 0.04


def test_example_echoing_repeats_every_example_exactly_factor_times():
    s = EchoStream(tagged(50, batch=8), "example", factor=2, buffer=64, seed=0)
    steps = list(s)
    seen = Counter(int(i) for st in steps for i in st.batch[1])
    assert len(seen) == 50 * 8 and set(seen.values()) == {2}
    assert sum(st.loaded for st in steps) == 400
    assert all(len(st.batch[1]) == 8 for st in steps[:-1])


def test_example_echoing_mixes_examples_across_batches():
    s = EchoStream(tagged(40, batch=8), "example", factor=2, buffer=64, seed=0)
    first = {int(i) // 8 for i in next(iter(s)).batch[1]}
    assert len(first) > 1  # a batch draws from several upstream batches


def test_adaptive_follows_ready_and_agree():
    flags = iter([True, False, False, True, False, True, True])
    s = EchoStream(endless(), "adaptive", ready=lambda: next(flags), seed=0)
    assert [s.next(0).fresh for _ in range(7)] == [True, False, False, True, False, True, True]
    vetoed = EchoStream(endless(), "adaptive", ready=lambda: True, agree=lambda f: False, seed=0)
    assert [vetoed.next(0).fresh for _ in range(3)] == [True, False, False]  # the first step always loads


def test_wraps_a_dataloader_and_transfers_fresh_batches_once():
    loader = DataLoader(TensorDataset(torch.arange(64.0).unsqueeze(1), torch.arange(64)), batch_size=8)
    moved = []
    s = EchoStream(iter(loader), "batch", factor=2, transfer=lambda b: moved.append(1) or b)
    steps = list(s)
    assert len(steps) == 16 and len(moved) == 8
    assert all(steps[i].batch is steps[i + 1].batch for i in range(0, 16, 2))  # echo reuses the tensors


class Upstream:
    """An endless upstream whose position can be copied (as the pipeline's checkpoint does)."""

    def __init__(self, pos: int = 0, batch: int = 4):
        self.pos, self.b = pos, batch

    def __iter__(self):
        return self

    def __next__(self):
        ids = torch.arange(self.pos * self.b, (self.pos + 1) * self.b)
        self.pos += 1
        return [ids.float().unsqueeze(1), ids]


@pytest.mark.parametrize("policy, kw", [("stochastic", {"schedule": S.cosine(1, 0.2)}), ("batch", {"factor": 2.5}),
                                        ("example", {"factor": 1.5, "buffer": 16})])
def test_state_dict_round_trip_continues_identically(policy, kw):
    up = Upstream()
    a = EchoStream(up, policy, seed=5, **kw)
    for i in range(37):
        a.next(i / 100)
    b = EchoStream(Upstream(up.pos), policy, seed=999, **kw)  # another seed: the state must carry the coin
    b.load_state_dict(a.state_dict())
    for i in range(37, 90):
        sa, sb = a.next(i / 100), b.next(i / 100)
        assert (sa.fresh, sa.loaded, sa.p) == (sb.fresh, sb.loaded, sb.p)
        assert torch.equal(sa.batch[1], sb.batch[1])


# -- batches of any structure: dicts and transformers' BatchEncoding (a Mapping, not a dict)
def dict_batches(n_batches: int, batch: int = 4, kind=dict):
    for b in range(n_batches):
        ids = torch.arange(b * batch, (b + 1) * batch)
        yield kind({"x": ids.float().unsqueeze(1).repeat(1, 3), "ids": ids})


def test_batch_echoing_keeps_mapping_batches_and_counts_examples_not_keys():
    s = EchoStream(dict_batches(6, batch=5), "batch", factor=2, seed=0)
    steps = list(s)
    assert len(steps) == 12 and [st.loaded for st in steps] == [5, 0] * 6  # len() of the dict would be 2
    assert all(steps[i].batch is steps[i + 1].batch for i in range(0, 12, 2))


def test_example_echoing_of_batch_encodings_repeats_every_example_and_keeps_the_type():
    from transformers import BatchEncoding

    s = EchoStream(dict_batches(20, batch=8, kind=BatchEncoding), "example", factor=3, buffer=32, seed=1)
    steps = list(s)
    assert all(type(st.batch) is BatchEncoding for st in steps)
    seen = Counter(int(i) for st in steps for i in st.batch["ids"])
    assert len(seen) == 160 and set(seen.values()) == {3}
    # Fields stay aligned: every row of x belongs to the id beside it.
    assert all(torch.equal(st.batch["x"][:, 0], st.batch["ids"].float()) for st in steps)
    assert sum(st.loaded for st in steps) == 160


def test_example_echoing_refuses_fields_that_are_not_tensors():
    up = iter([{"x": torch.zeros(4, 1), "text": ["a", "b", "c", "d"]}])
    with pytest.raises(TypeError, match="str values that are not tensors"):
        EchoStream(up, "example", factor=2).next()


def test_a_restored_batch_and_pool_go_through_transfer():
    """Resuming on a GPU: the checkpoint holds CPU tensors and the pool must come back to the device
    the batches train on. Here transfer converts to float64, standing in for the device."""
    a = EchoStream(Upstream(), "example", factor=2, buffer=16, seed=0)
    for _ in range(5):
        a.next()
    moved = []
    transfer = lambda b: moved.append(b) or [t.double() for t in b]
    b = EchoStream(Upstream(a.upstream.pos), "example", factor=2, buffer=16, seed=0, transfer=transfer)
    b.load_state_dict(a.state_dict())
    assert len(moved) == 2  # the held batch and the pool
    assert all(t.dtype == torch.float64 for t in b.pool + b.current)
    for _ in range(20):  # and it continues as the unbroken stream, the pool on the "device"
        sa, sb = a.next(), b.next()
        assert torch.equal(sa.batch[1].double(), sb.batch[1])
