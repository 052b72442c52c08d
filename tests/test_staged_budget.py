"""budget.stop_at (successive halving's stages): a run stopped at a fraction of its budget and
continued by the same command with a larger fraction ends exactly as an unbroken run, and only a
complete run counts as finished."""
from __future__ import annotations

import json
import math
import shutil

from omegaconf import OmegaConf

from runner.records import load_final_examples
from runner.report.runs import find_runs
from tests.conftest import cli_inproc, read_records, without_wall

# digits, cosine echoing (p and the learning rate follow the budget's fraction), a simulated clock;
# 1,280 loads in batches of 32 with a record every 320: the stages end at 0.25 and 0.5 exactly.
ARGS = ("model.width=8", "budget.example_loads=1280", "eval.every_loads=320", "eval.batch_size=128",
        "eval.subset=100", "hardware=gpu_nvme")


def summary(d) -> dict:
    return json.loads((d / "summary.json").read_text())


def test_a_run_stopped_at_a_quarter_and_a_half_ends_as_an_unbroken_run(tmp_path):
    whole, staged = tmp_path / "whole", tmp_path / "staged"
    assert cli_inproc(*ARGS, f"hydra.run.dir={whole}")[0] == 0
    ref = without_wall(read_records(whole))

    code, err = cli_inproc(*ARGS, "budget.stop_at=0.25", f"hydra.run.dir={staged}")
    assert code == 0, err
    s = summary(staged)
    assert (s["status"], s["stopped_at_fraction"]) == ("stopped", 0.25)
    assert without_wall(read_records(staged)) == ref[:2]  # the records at 0 and 320 loads
    assert not (staged / "final_examples.npz").exists()
    run = find_runs([staged])[0]
    assert run.status == "stopped" and math.isnan(run.final("test_acc"))  # never a finished run
    assert run.budget == find_runs([whole])[0].budget  # a stage of the same budget: compared with it

    assert cli_inproc(*ARGS, "budget.stop_at=0.25", f"hydra.run.dir={staged}")[0] == 0  # already there
    assert len(read_records(staged)) == 2
    assert cli_inproc(*ARGS, "budget.stop_at=0.5", f"hydra.run.dir={staged}")[0] == 0
    assert summary(staged)["stopped_at_fraction"] == 0.5 and len(read_records(staged)) == 3
    # torchrun's ranks read the stored config: it carries the stage the latest command asked for
    assert OmegaConf.load(staged / ".hydra" / "config.yaml").budget.stop_at == 0.5

    assert cli_inproc(*ARGS, f"hydra.run.dir={staged}")[0] == 0
    assert without_wall(read_records(staged)) == ref
    assert (summary(staged)["status"], summary(staged)["stopped_at_fraction"]) == ("complete", None)
    assert (load_final_examples(staged) == load_final_examples(whole)).all()
    assert find_runs([staged])[0].status == "complete"

    # a finished run is not re-run by a smaller stage
    code, err = cli_inproc(*ARGS, "budget.stop_at=0.25", f"hydra.run.dir={staged}")
    assert code == 0 and "nothing to do" in err and without_wall(read_records(staged)) == ref


def test_a_stage_needs_an_evaluation_and_a_checkpoint_to_stop_at(tmp_path):
    for bad in (("budget.stop_at=1.5",), ("budget.stop_at=0.5", "checkpoint.enabled=false"),
                ("budget.stop_at=0.5", "eval.every_loads=null")):
        code, err = cli_inproc(*ARGS, *bad, f"hydra.run.dir={tmp_path / 'r'}")
        assert code == 2 and "budget.stop_at" in err, (bad, err)
        assert not (tmp_path / "r").exists()


def test_a_stage_already_reached_is_not_trained_again_even_without_its_checkpoint(tmp_path):
    # As after a clone of committed records (checkpoints are never committed): the stage a command
    # asks for is there, so there is nothing to resume and nothing is trained.
    staged = tmp_path / "staged"
    assert cli_inproc(*ARGS, "budget.stop_at=0.5", f"hydra.run.dir={staged}")[0] == 0
    before = read_records(staged)
    shutil.rmtree(staged / "checkpoint")
    code, err = cli_inproc(*ARGS, "budget.stop_at=0.25", f"hydra.run.dir={staged}")
    assert code == 0 and "nothing to do" in err, err
    assert read_records(staged) == before and not (staged / "checkpoint").exists()
    assert (summary(staged)["status"], summary(staged)["stopped_at_fraction"]) == ("stopped", 0.5)
