"""The training loop end to end in-process: exact counting, budgets, reproducibility."""
import math

import pytest

from tests.conftest import make_cfg, run_inproc, without_wall


def test_example_loads_count_exactly_and_stop_within_one_batch(tmp_path, small_digits):
    recs, summary = run_inproc(tmp_path, *small_digits, "schedule=constant", "schedule.p=0.5")
    last = recs[-1]
    B = 32
    assert last["example_loads"] == B * (last["step"] - last["echo_steps"])
    assert 960 <= last["example_loads"] < 960 + B
    assert last["echo_steps"] > 0
    assert summary["status"] == "complete" and summary["final"]["step"] == last["step"]
    # a record at step 0, at each eval.every_loads crossing, and at the end
    assert recs[0]["step"] == 0 and [r["example_loads"] for r in recs][1:4] == [320, 640, 960]


def test_step_budget_and_u_is_the_largest_fraction(tmp_path):
    recs, _ = run_inproc(tmp_path, "budget.example_loads=100000", "budget.steps=40", "eval.every_loads=null",
                         "schedule=constant", "schedule.p=0.25")
    assert recs[-1]["step"] == 40
    assert len(recs) == 2  # step 0 and the end


def test_batch_echoing_in_the_loop(tmp_path):
    recs, _ = run_inproc(tmp_path, "echo=batch", "echo.factor=3", "budget.example_loads=640", "eval.every_loads=null")
    # 20 fresh batches; the run stops as the 20th arrives, so it is used once: 19 * 3 + 1 steps
    assert recs[-1]["example_loads"] == 640 and recs[-1]["step"] == 58 and recs[-1]["echo_steps"] == 38


def test_same_seed_identical_records_different_seed_differs(tmp_path, small_digits):
    a, _ = run_inproc(tmp_path / "a", *small_digits, "seed=3")
    b, _ = run_inproc(tmp_path / "b", *small_digits, "seed=3")
    c, _ = run_inproc(tmp_path / "c", *small_digits, "seed=4")
    assert without_wall(a) == without_wall(b)
    assert without_wall(a) != without_wall(c)
    assert a[-1]["test_loss"] != c[-1]["test_loss"]


def test_records_carry_every_clock_and_metric(tmp_path, small_digits):
    recs, summary = run_inproc(tmp_path, *small_digits)
    need = {"step", "example_loads", "epoch", "echo_steps", "wall_s", "eval_s", "sim_s", "idle_s", "lr", "p_load",
            "train_loss", "test_loss", "test_acc", "comm_rounds", "comm_bytes"}
    assert need <= set(recs[-1])
    assert recs[-1]["epoch"] == pytest.approx(recs[-1]["example_loads"] / 1438)  # 1,797 digits less a 20% test split
    assert recs[-1]["wall_s"] > 0 and recs[-1]["eval_s"] > 0
    assert len(summary["config_hash"]) == 16 and summary["versions"]["torch"]


def test_language_run_reports_perplexity(tmp_path):
    recs, summary = run_inproc(tmp_path, "dataset=python_docs", "budget.example_loads=64", "eval.every_loads=null",
                               "data.max_test_examples=64", "model.n_embd=32")
    assert "test_ppl" in recs[-1] and "test_acc" not in recs[-1]
    assert recs[-1]["test_ppl"] == pytest.approx(math.exp(recs[-1]["test_loss"]), rel=1e-12)
    assert recs[-1]["test_ppl"] < 1024  # a trained model beats the uniform guess over the vocabulary
    assert summary["target"]["metric"] == "test_ppl"


def test_dataset_selects_its_default_model():
    assert make_cfg("dataset=python_docs").model._target_ == "runner.models.tiny_gpt2"
    assert make_cfg().model._target_ == "runner.models.SmallCNN"
