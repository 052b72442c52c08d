"""The trainer built from runner.parts, timed with the clock it is given (how the benchmarks count CPU
time without replacing its timer)."""
from __future__ import annotations

from runner.train import Trainer

from .conftest import make_cfg, read_records


def test_the_trainer_times_with_the_clock_it_is_given(tmp_path):
    cfg = make_cfg("budget.example_loads=64", "eval.every_loads=null", "model.width=4", "data.max_test_examples=32",
                   "checkpoint.enabled=false")
    calls = []

    def clock() -> float:  # a clock that never moves: every interval the trainer times is 0 s long
        calls.append(1)
        return 5.0

    t = Trainer(cfg, tmp_path, clock=clock)
    with t.session():
        status = t.train()
    t.finish(status)
    recs = read_records(tmp_path)
    assert status == "complete" and recs[0]["example_loads"] == 0 and recs[-1]["example_loads"] == 64
    assert {r["wall_s"] for r in recs} == {0.0} and calls  # on the real clock every record after the first is > 0
