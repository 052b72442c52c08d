"""eval.subset: every record but the last evaluates a fixed subset of the test set (the examples
data.max_test_examples would keep), the last one and final_examples.npz the whole test set."""
from __future__ import annotations

import json

from runner.records import load_final_examples
from tests.conftest import run_inproc, without_wall

# digits: 1,438 train / 359 test images; 960 loads in batches of 32, a record every 320 loads.
ARGS = ("model.width=8", "budget.example_loads=960", "eval.every_loads=320", "eval.batch_size=64")
TEST = 359


def test_records_evaluate_the_subset_and_the_last_one_the_whole_test_set(tmp_path):
    recs, summary = run_inproc(tmp_path / "a", *ARGS, "eval.subset=100")
    assert summary["status"] == "complete"
    # 0, 320, 640 and 960 loads on the subset; the run's end (the echoes of the last load after it,
    # at 960 loads too) on the whole test set
    assert [r["example_loads"] for r in recs] == [0, 320, 640, 960, 960]
    assert [r["eval_examples"] for r in recs] == [100, 100, 100, 100, TEST]
    right = load_final_examples(tmp_path / "a")
    assert len(right) == TEST and right.sum() / TEST == recs[-1]["test_acc"]
    assert json.loads((tmp_path / "a" / "summary.json").read_text())["final"]["eval_examples"] == TEST

    # Paired: the subset holds exactly the examples that data.max_test_examples=100 evaluates (the
    # same for every run and seed), so a run of the same seed repeats its records but the last.
    # (tests/test_staged_budget.py compares two runs with eval.subset record by record.)
    cut, _ = run_inproc(tmp_path / "c", *ARGS, "data.max_test_examples=100")
    assert [r["eval_examples"] for r in cut] == [100] * 5
    assert without_wall(cut[:4]) == without_wall(recs[:4])


def test_without_a_subset_every_record_is_of_the_whole_test_set(tmp_path):
    recs, _ = run_inproc(tmp_path, *ARGS)
    assert [(r["example_loads"], r["eval_examples"]) for r in recs] == [(0, TEST), (320, TEST), (640, TEST),
                                                                       (960, TEST), (960, TEST)]
    assert recs[-1]["step"] > recs[-2]["step"]  # a record per step: the end is the last load's echoes
    assert len(load_final_examples(tmp_path)) == TEST
