"""The training loop end to end in-process: exact counting, budgets, reproducibility."""
import math

import numpy as np
import pytest
import torch

from tests.conftest import make_cfg, run_inproc, without_wall


def test_example_loads_count_exactly_and_end_before_the_load_past_the_budget(tmp_path, small_digits):
    recs, summary = run_inproc(tmp_path, *small_digits, "schedule=constant", "schedule.p=0.5")
    last = recs[-1]
    B = 32
    assert last["example_loads"] == B * (last["step"] - last["echo_steps"])
    assert last["example_loads"] == 960  # 30 whole batches; the 31st would pass the budget
    assert last["echo_steps"] > 0
    assert summary["status"] == "complete" and summary["final"]["step"] == last["step"]
    # a record at step 0, at each eval.every_loads crossing, and at the end
    assert recs[0]["step"] == 0 and [r["example_loads"] for r in recs][1:4] == [320, 640, 960]


def test_step_budget_and_u_is_the_largest_fraction(tmp_path):
    recs, _ = run_inproc(tmp_path, "budget.example_loads=100000", "budget.steps=40", "eval.every_loads=null",
                         "schedule=constant", "schedule.p=0.25")
    assert recs[-1]["step"] == 40
    assert len(recs) == 2  # step 0 and the end


@pytest.mark.parametrize("budget, batches", [(2048, 64), (2000, 62)])
def test_batch_echoing_uses_every_fresh_batch_factor_times_to_the_end_of_the_budget(tmp_path, budget, batches):
    # The last fresh batch gets its echo steps too: the run ends at the step that would load beyond
    # the budget (the case: 64 fresh batches of 32 at factor 3 are 192 steps, not 190).
    recs, _ = run_inproc(tmp_path, "echo=batch", "echo.factor=3", f"budget.example_loads={budget}",
                         "eval.every_loads=null", "model.width=4", "data.max_test_examples=32")
    assert recs[-1]["example_loads"] == 32 * batches
    assert recs[-1]["step"] == 3 * batches and recs[-1]["echo_steps"] == 2 * batches


def test_stochastic_echoing_runs_on_at_the_end_until_its_coin_asks_for_a_load(tmp_path):
    from runner.echo import echo_seed

    recs, _ = run_inproc(tmp_path, "schedule=constant", "schedule.p=0.25", "budget.example_loads=320",
                         "eval.every_loads=null", "model.width=4", "data.max_test_examples=32")
    # The coin alone decides: 10 loads, then echo steps until the coin's 11th "load" ends the run.
    g = torch.Generator().manual_seed(echo_seed(0))
    steps, loads = 0, 0
    while True:
        fresh = torch.rand((), generator=g).item() < 0.25 or steps == 0
        if fresh and loads == 10:
            break
        loads += fresh
        steps += 1
    assert recs[-1]["step"] == steps and recs[-1]["example_loads"] == 320


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
    # the final record's examples, one bit each in test-set order: as many right as its accuracy says
    from runner.records import load_final_examples

    right = load_final_examples(tmp_path)
    assert right.dtype == bool and len(right) == 1797 - 1438
    assert right.sum() == round(recs[-1]["test_acc"] * len(right))


def test_language_run_reports_perplexity(tmp_path):
    recs, summary = run_inproc(tmp_path, "dataset=python_docs", "budget.example_loads=64", "eval.every_loads=null",
                               "data.max_test_examples=64", "model.n_embd=32")
    assert "test_ppl" in recs[-1] and "test_acc" not in recs[-1]
    assert recs[-1]["test_ppl"] == pytest.approx(math.exp(recs[-1]["test_loss"]), rel=1e-12)
    assert recs[-1]["test_ppl"] < 1024  # a trained model beats the uniform guess over the vocabulary
    assert summary["target"]["metric"] == "test_ppl"
    # the final record's loss block by block (float16): blocks of equal length average to test_loss
    from runner.records import load_final_examples

    loss = load_final_examples(tmp_path)
    assert loss.dtype == np.float32 and len(loss) == 64
    assert loss.mean(dtype=np.float64) == pytest.approx(recs[-1]["test_loss"], rel=1e-3)


def test_dataset_selects_its_default_model():
    assert make_cfg("dataset=python_docs").model._target_ == "runner.models.tiny_gpt2"
    assert make_cfg().model._target_ == "runner.models.SmallCNN"


def test_target_stop_ends_the_run_at_the_first_record_that_reaches_it(tmp_path):
    recs, summary = run_inproc(tmp_path, "target.stop=true", "target.value=0.8", "eval.every_loads=160",
                               "model.width=8")
    hits = [r for r in recs if r["test_acc"] >= 0.8]
    assert hits and recs[-1] == hits[0] and all(r["test_acc"] < 0.8 for r in recs[:-1])
    assert recs[-1]["example_loads"] < 14370 and summary["stopped_at_target"] is True
    assert summary["target"]["reached"]["step"] == recs[-1]["step"]


def test_the_echoes_of_the_last_batch_train(tmp_path, monkeypatch):
    """Batch echoing (3 uses a batch) with the default cosine rate falling to 0: every step trains at
    the rate of its own position, between its batch's load and the next (the k-th load's j-th use at
    u = (k + j/3) / 10), > 0 to the end, so the final model is not the one right after the last load."""
    import runner.train as T
    from runner.schedules import lr_at

    lrs, after_last_load = [], {}
    real = T.train_step

    def spy(net, opt, *args):
        lrs.append(opt.param_groups[0]["lr"])
        loss = real(net, opt, *args)
        if len(lrs) == 28:  # step 27 loaded the 10th and last batch
            after_last_load.update({k: v.clone() for k, v in net.state_dict().items()})
        return loss

    monkeypatch.setattr(T, "train_step", spy)
    recs, _ = run_inproc(tmp_path, "echo=batch", "echo.factor=3", "budget.example_loads=320", "eval.every_loads=null",
                         "model.width=4", "data.max_test_examples=32", "optim.lr_schedule=cosine",
                         "optim.lr_min_ratio=0")
    o = make_cfg("optim.lr_schedule=cosine", "optim.lr_min_ratio=0").optim
    assert recs[-1]["step"] == len(lrs) == 30
    assert lrs == pytest.approx([lr_at(o, (t // 3 + (t % 3) / 3) / 10) for t in range(30)], rel=1e-12)
    assert min(lrs) > 0 and recs[-1]["lr"] == lrs[-1]
    final = torch.load(tmp_path / "checkpoint" / "rank0.pt", weights_only=True)["model"]
    assert any(not torch.equal(final[k], v) for k, v in after_last_load.items())
