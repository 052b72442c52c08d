"""``echo-run launcher=torchrun``: a real torchrun job with 2 processes (gloo on CPU), started as a
user starts it; one run directory; a failing rank ends the job with its error shown."""
from __future__ import annotations

import json
import textwrap

import pytest
from omegaconf import OmegaConf

from runner.schema import ConfigError

from tests.conftest import cli, make_cfg

SMALL = ("launcher=torchrun", "launcher.nproc_per_node=2", "train.threads=1", "data.batch_size=16", "model.width=8",
         "data.max_test_examples=64", "eval.every_loads=null")


def test_torchrun_job_writes_one_run_directory(tmp_path):
    run = tmp_path / "run"
    p = cli(*SMALL, "comm=on_load", "schedule=constant", "schedule.p=0.5", "budget.example_loads=320",
            f"hydra.run.dir={run}", timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert [x.name for x in tmp_path.iterdir()] == ["run"]  # not one directory per rank
    assert {"metrics.jsonl", "summary.json", "rank0.json", "rank1.json", ".hydra"} <= {x.name for x in run.iterdir()}
    summary = json.loads((run / "summary.json").read_text())
    last = summary["final"]
    assert summary["status"] == "complete" and summary["world_size"] == 2
    loads = last["step"] - last["echo_steps"]
    assert last["example_loads"] == 2 * 16 * loads >= 320 and last["comm_rounds"] == loads
    r = [json.loads((run / f"rank{k}.json").read_text()) for k in (0, 1)]
    assert r[0]["decision_hash"] == r[1]["decision_hash"]
    assert r[0]["param_checksum"] == r[1]["param_checksum"] is not None
    assert r[0]["comm_bytes"] == last["comm_bytes"] > 0


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


def test_dry_run_prints_the_command_and_multi_node_options(tmp_path, capsys):
    from runner.cli import claim_run_dir
    from runner.launch import command, torchrun
    from runner.summary import config_hash

    run = tmp_path / "run"
    cfg = make_cfg("launcher=torchrun", "launcher.nproc_per_node=4", "launcher.dry_run=true")
    claim_run_dir(cfg, run)  # what echo-run does before launching
    assert torchrun(cfg, run) is None
    out = capsys.readouterr().out
    assert "torch.distributed.run --nproc-per-node=4 --max-restarts=0 --standalone -m runner.worker " \
           f"{run.resolve()}/.hydra/config.yaml" in out
    assert sorted(x.name for x in run.iterdir()) == [".hydra"]  # nothing ran
    stored = OmegaConf.load(run / ".hydra" / "config.yaml")  # what the workers will read
    assert stored.launcher.nproc_per_node == 4
    cfg = make_cfg("launcher=torchrun", "launcher.nnodes=2", "launcher.rdzv_endpoint=node0:29500",
                   "launcher.max_restarts=3")
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
