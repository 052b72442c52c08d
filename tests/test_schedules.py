import math

import pytest

from runner import schedules as S
from runner.config import build
from runner.schema import ScheduleKeys
from tests.conftest import make_cfg


@pytest.mark.parametrize("sched, expect", [
    (S.none(), (1.0, 1.0, 1.0)),
    (S.constant(0.25), (0.25, 0.25, 0.25)),
    (S.cosine(1.0, 0.1), (1.0, 0.55, 0.1)),
    (S.linear(0.8, 0.2), (0.8, 0.5, 0.2)),
    # milestones at 0.5 and 0.75: u=0.5 has passed the first one
    (S.step(1.0, 0.5, [0.5, 0.75]), (1.0, 0.5, 0.25)),
])
def test_schedule_values_at_0_half_1(sched, expect):
    got = tuple(sched(u) for u in (0.0, 0.5, 1.0))
    assert got == pytest.approx(expect, abs=1e-12)


def test_cosine_is_monotone_and_clipped():
    f = S.cosine(0.9, 0.2)
    vals = [f(i / 100) for i in range(101)]
    assert all(a >= b for a, b in zip(vals, vals[1:]))
    assert f(-1) == pytest.approx(0.9) and f(2) == pytest.approx(0.2)


def test_each_yaml_builds_its_schedule_from_its_target():
    for name, u, want in [("none", 0.3, 1.0), ("constant", 0.3, 0.5), ("cosine", 1.0, 0.1),
                          ("linear", 0.5, 0.55), ("step", 0.8, 0.25)]:
        cfg = make_cfg(f"schedule={name}")
        assert build(cfg.schedule, ScheduleKeys)(u) == pytest.approx(want)


def test_lr_schedule_with_warmup():
    cfg = make_cfg("optim.lr=0.2", "optim.warmup=0.1", "optim.lr_schedule=cosine")
    assert S.lr_at(cfg.optim, 0.05) == pytest.approx(0.1)
    assert S.lr_at(cfg.optim, 0.1) == pytest.approx(0.2)
    assert S.lr_at(cfg.optim, 0.55) == pytest.approx(0.1)
    assert S.lr_at(cfg.optim, 1.0) == pytest.approx(0.0, abs=1e-12)
    assert math.isclose(S.lr_at(make_cfg("optim.lr_schedule=constant").optim, 0.7), 0.05)


def test_a_users_own_schedule_plugs_in_by_target(tmp_path):
    """A p(u) of the user's own, named by _target_ with its own arguments, is what the loop uses."""
    from tests.conftest import run_inproc

    recs, _ = run_inproc(tmp_path, "schedule._target_=tests.helpers.every_third", "~schedule.p_max",
                         "~schedule.p_min", "+schedule.offset=0", "budget.steps=30", "eval.every_loads=null",
                         "model.width=4", "data.max_test_examples=32")
    assert recs[-1]["step"] == 30 and recs[-1]["echo_steps"] == 20  # loads at steps 0, 3, 6, ...


def test_lr_position_moves_through_the_echoes_and_stays_below_the_next_load():
    # batch echoing, 4 uses of a batch of 32 loaded after 320 examples: the j-th use at 320 + 32 j / 4
    got = [S.lr_position(320, 32, j, 3 - j) for j in range(4)]
    assert got == pytest.approx([320, 328, 336, 344], abs=1e-12)
    # stochastic echoing at p = 1/4: expected 3 more uses after the load; f = jp / (jp + 1) < 1 always
    got = [S.lr_position(320, 32, j, 3.0) for j in range(200)]
    assert got[0] == 320 and all(a < b < 352 for a, b in zip(got, got[1:]))
    assert S.lr_position(320, 32, 7, math.inf) == 320  # p = 0: the data never moves on
    # example echoing: the loads less the held uses over the factor; the last step holds its own batch
    assert S.example_position(2048, 2 * 32, 2.0) == 2016 and S.example_position(512, 1056, 2.0) == 0.0
