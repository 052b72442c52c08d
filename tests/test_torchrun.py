"""``echo-run launcher=torchrun``: a real torchrun job with 2 processes (gloo on CPU), started as a
user starts it; one run directory; a failing rank ends the job with its error shown."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import textwrap
import time

import pytest
import torch
from omegaconf import OmegaConf

from runner.errors import ConfigError

from tests.conftest import ECHO_RUN, ROOT, cli, make_cfg, read_records, without_wall

pytestmark = pytest.mark.slow  # processes and torchrun jobs: not in `make test-fast`

SMALL = ("launcher=torchrun", "launcher.nproc_per_node=2", "train.threads=1", "data.batch_size=16", "model.width=8",
         "data.max_test_examples=64", "eval.every_loads=null")
# Echoing with averaging on load, a model that differs per rank before the broadcast, a pipeline slowed
# to 200 examples/s per rank (40 fresh batches take 3 s, so a signal lands mid-run).
JOB = ("comm=on_load", "comm.checksums=true", "schedule=constant", "schedule.p=0.5", "budget.example_loads=1280",
       "model._target_=tests.helpers.RankSkewedCNN", "pipeline.examples_per_s=200", "train.check_every=4")


def test_torchrun_job_writes_one_run_directory(tmp_path):
    """One run directory; ranks that started from different models (a user's initialisation that
    depends on the rank) start from rank 0's, draw the same coins and agree after every round."""
    run = tmp_path / "run"
    p = cli(*SMALL, *JOB, f"hydra.run.dir={run}", timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert [x.name for x in tmp_path.iterdir()] == ["run"]  # not one directory per rank
    assert {"metrics.jsonl", "summary.json", "rank0.json", "rank1.json", ".hydra"} <= {x.name for x in run.iterdir()}
    summary = json.loads((run / "summary.json").read_text())
    last = summary["final"]
    assert summary["status"] == "complete" and summary["world_size"] == 2 and summary["method"] == "constant(p=0.5)+on_load"
    loads = last["step"] - last["echo_steps"]
    r = [json.loads((run / f"rank{k}.json").read_text()) for k in (0, 1)]
    final = r[0]["last_round_step"] == last["step"]  # the final round, when the last step was an echo
    assert last["example_loads"] == 2 * 16 * loads == 1280 and last["comm_rounds"] == loads + final
    assert r[0]["decision_hash"] == r[1]["decision_hash"]
    assert r[0]["initial_checksum"] == r[1]["initial_checksum"]  # rank 0's model, broadcast
    assert r[0]["param_checksum"] == r[1]["param_checksum"] is not None
    assert r[0]["final_checksum"] == r[1]["final_checksum"]  # both ranks end with the same model
    assert r[0]["comm_bytes"] == last["comm_bytes"] > 0

    # A SIGTERM (a scheduler's pre-emption) with no records due (eval.every_loads=null): the ranks agree
    # to stop within train.check_every steps, checkpoint the same step, and exit 143; the same command
    # then ends as the unbroken run did.
    again = tmp_path / "again"
    job = subprocess.Popen([*ECHO_RUN, "logger.progress=false", *SMALL, *JOB, f"hydra.run.dir={again}"], cwd=ROOT,
                           env=dict(os.environ, OMP_NUM_THREADS="1"), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not (again / "metrics.jsonl").exists() and job.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)  # until the step-0 record: both ranks are training
        job.send_signal(signal.SIGTERM)
        out, _ = job.communicate(timeout=240)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
    assert job.returncode == 143, out[-3000:]
    steps = [torch.load(again / "checkpoint" / f"rank{k}.pt", weights_only=True)["counters"]["step"] for k in (0, 1)]
    assert steps[0] == steps[1] and steps[0] % 4 == 0 and 0 < steps[0] < last["step"], steps
    p = cli(*SMALL, *JOB, f"hydra.run.dir={again}", timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert without_wall(read_records(again)) == without_wall(read_records(run))
    for k in (0, 1):
        assert json.loads((again / f"rank{k}.json").read_text()) == r[k]


# Every local strategy in a torchrun job (a job runs one strategy): records between rounds, and the
# run ends with the same model on both ranks. Plain on_load is the job above; periodic and
# probabilistic with DiLoCo's outer Nesterov step here; the other combinations (periodic+nesterov,
# probabilistic, on_load+nesterov) in test_comm.py's training loops, which share one pair of
# processes (a torchrun job costs ~15 CPU-seconds to start).
LOCAL = {"periodic": ("comm=periodic", "comm.period=3", "schedule=none"),
         "probabilistic+nesterov": ("comm=probabilistic", "comm.schedule.p=0.5", "comm.outer_optim=nesterov",
                                    "schedule=constant", "schedule.p=0.5")}
TINY = ("launcher=torchrun", "launcher.nproc_per_node=2", "train.threads=1", "data.batch_size=16", "model.width=4",
        "data.max_test_examples=64", "eval.every_loads=96", "budget.example_loads=320", "checkpoint.enabled=false")


@pytest.mark.parametrize("name", list(LOCAL))
def test_local_strategies_evaluate_the_consensus_and_end_with_one_model(tmp_path, name):
    run = tmp_path / "run"
    p = cli(*TINY, *LOCAL[name], f"hydra.run.dir={run}", timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    recs = read_records(run)
    r = [json.loads((run / f"rank{k}.json").read_text()) for k in (0, 1)]
    assert r[0]["final_checksum"] == r[1]["final_checksum"] and r[0]["decision_hash"] == r[1]["decision_hash"]
    last = recs[-1]
    assert last["comm_rounds"] == r[0]["comm_rounds"] and last["comm_bytes"] == r[0]["comm_bytes"]
    # the evaluation-only averages are counted apart: training's rounds each carry the model once
    model_bytes = r[0]["comm_bytes"] // r[0]["comm_rounds"]
    assert r[0]["comm_bytes"] == r[0]["comm_rounds"] * model_bytes
    assert last["eval_comm_bytes"] == r[1]["eval_comm_bytes"] and last["eval_comm_bytes"] % model_bytes == 0
    if name == "periodic":
        # rounds at steps 0, 3, 6 and 9 (0-based), the last step: no final round is needed; the records
        # after 3, 6 and 9 steps came between rounds and each averaged the model for evaluation
        assert [rec["step"] for rec in recs] == [0, 3, 6, 9, 10] and r[0]["last_round_step"] == 9
        assert last["comm_rounds"] == 4 and last["eval_comm_bytes"] == 3 * model_bytes
    else:
        assert len(recs) >= 4 and last["eval_comm_bytes"] > 0


FAILING = '''
import os
from runner.models import SmallCNN

def small_cnn_failing_on_rank1(**kw):
    if os.environ.get("RANK") == "1":
        raise RuntimeError("injected failure on rank 1")
    return SmallCNN(**kw)
'''


def test_a_failing_rank_fails_the_job_with_its_error(tmp_path):
    (tmp_path / "failing_model.py").write_text(textwrap.dedent(FAILING))
    run = tmp_path / "run"
    p = cli(*SMALL, "comm=allreduce", "budget.example_loads=320", "model._target_=failing_model.small_cnn_failing_on_rank1",
            f"hydra.run.dir={run}", env={"PYTHONPATH": str(tmp_path)}, timeout=240)  # a hang would time out
    assert p.returncode != 0
    assert "injected failure on rank 1" in p.stderr
    assert "the torchrun job exited with status" in p.stderr and "Traceback" in p.stderr
    assert not (run / "summary.json").exists()


def test_bad_input_found_in_the_ranks_exits_2_with_one_paragraph(tmp_path):
    # The data's files are looked for in the ranks: a missing set is bad input (exit 2, its paragraph),
    # not a torchrun failure with a traceback; the new run directory is left as it was (gone).
    empty, run = tmp_path / "empty", tmp_path / "run"
    empty.mkdir()
    p = cli(*SMALL, "comm=allreduce", "dataset=fashion_mnist", f"data.root={empty}", "data.download=false",
            f"hydra.run.dir={run}", timeout=240)
    assert p.returncode == 2, p.stderr[-3000:]
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("echo-run: error:") and "fashion" in last.lower() and str(empty) in last
    assert not re.search(r'File "[^"]*/runner/', p.stderr)  # torchrun reports the exit; no traceback of ours
    assert not run.exists() and not list(tmp_path.glob("**/.refused.rank*"))


def test_dry_run_prints_the_command_and_multi_node_options(tmp_path, capsys):
    from runner.runs import claim as claim_run_dir
    from runner.launch import command, torchrun
    from runner.config import config_hash

    run = tmp_path / "run"
    cfg = make_cfg("launcher=torchrun", "launcher.nproc_per_node=4", "comm=allreduce", "launcher.dry_run=true")
    claim_run_dir(cfg, run)  # what echo-run does before launching
    assert torchrun(cfg, run) is None
    out = capsys.readouterr().out
    assert "torch.distributed.run --nproc-per-node=4 --max-restarts=0 --standalone -m runner.worker " \
           f"{run.resolve()}/.hydra/config.yaml" in out
    assert sorted(x.name for x in run.iterdir()) == [".hydra"]  # nothing ran
    stored = OmegaConf.load(run / ".hydra" / "config.yaml")  # what the workers will read
    assert stored.launcher.nproc_per_node == 4
    cfg = make_cfg("launcher=torchrun", "launcher.nnodes=2", "launcher.rdzv_endpoint=node0:29500",
                   "launcher.max_restarts=3", "comm=allreduce")
    cmd = command(cfg, run)
    h = config_hash(OmegaConf.to_container(cfg, resolve=True))
    assert "--standalone" not in cmd and "--nnodes=2" in cmd and "--rdzv-endpoint=node0:29500" in cmd
    assert f"--rdzv-id=echo-run-{h}" in cmd and "--max-restarts=3" in cmd


def test_model_averaging_without_torchrun_is_refused():
    with pytest.raises(ConfigError, match="launcher=torchrun"):
        make_cfg("comm=on_load")
    with pytest.raises(ConfigError, match="launcher.nnodes"):
        make_cfg("launcher=torchrun", "launcher.nnodes=two")
    assert make_cfg("comm=grad_accum").comm.k == 4  # accumulation also works in one process
