"""The distributed paths without a cluster: two torchrun agents on this machine as two nodes of one
job, and sweeps through Hydra's submitit plugin with its local executor (the same plugin as
``hydra/launcher=submitit_slurm``: the jobs run in processes of their own)."""
from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.conftest import ECHO_RUN, ROOT, read_records

pytestmark = pytest.mark.slow  # processes and torchrun jobs: not in `make test-fast`

SMALL = ("logger.progress=false", "train.threads=1", "model.width=8", "data.max_test_examples=64",
         "eval.every_loads=null", "budget.example_loads=640")


def start(*args: str) -> subprocess.Popen:
    """``echo-run ARGS`` in a session of its own, so that everything it starts can be stopped."""
    return subprocess.Popen([*ECHO_RUN, *args], cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def finish(*procs: subprocess.Popen, timeout: float) -> list:
    """(exit status, stdout, stderr) of each; whatever is still running at the deadline is killed."""
    deadline = time.monotonic() + timeout
    out = []
    try:
        for p in procs:
            o, e = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            out.append((p.returncode, o, e))
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)  # the job's own processes too (torchrun, submitit's)
            except ProcessLookupError:
                pass
            p.wait()
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- claiming a run directory at the same moment


def _claim_many(base: str, n: int, barrier, queue) -> None:
    from runner.config import compose
    from runner.errors import ConfigError
    from runner.runs import claim

    cfg, got = compose(["train.threads=1"]), []
    for i in range(n):
        barrier.wait()  # every process claims directory i at the same moment
        try:
            got.append(claim(cfg, Path(base) / str(i), ["seed=0"]))
        except ConfigError as e:
            got.append(f"refused: {e}")
    queue.put(got)


@pytest.mark.timeout(120)
def test_processes_claiming_one_directory_at_once_all_get_it_and_one_writes_it(tmp_path):
    """What every node of a multi-node job does: the same claim at the same moment. Exactly one
    process writes .hydra/ (whole), the others join it; none is refused (the claim written in
    two steps, directory then config, refused most of them)."""
    n, procs = 20, 4
    ctx = multiprocessing.get_context("fork")
    barrier, queue = ctx.Barrier(procs), ctx.Queue()
    ps = [ctx.Process(target=_claim_many, args=(str(tmp_path), n, barrier, queue)) for _ in range(procs)]
    for p in ps:
        p.start()
    got = [queue.get(timeout=100) for _ in ps]
    for p in ps:
        p.join(timeout=10)
    for i in range(n):
        assert Counter(g[i] for g in got) == {"new": 1, "resume": procs - 1}, (i, [g[i] for g in got])
        d = tmp_path / str(i)
        assert sorted(x.name for x in d.iterdir()) == [".hydra"]  # no claim left half-written
        assert sorted(x.name for x in (d / ".hydra").iterdir()) == ["config.yaml", "overrides.yaml"]


# -- two nodes on one machine


NODES = ("launcher=torchrun", "launcher.nnodes=2", "launcher.nproc_per_node=1", "comm=on_load", "comm.checksums=true")


@pytest.mark.timeout(180)
@pytest.mark.parametrize("disk", ["shared"])  # "per_node" (a node's own disk) works too; left out for time
def test_two_torchrun_agents_make_one_job(tmp_path, disk):
    """Two echo-run processes started together, as on two nodes, meet at a c10d rendezvous hosted
    by the first. ``shared``: one run directory (a cluster's shared disk), which both claim at once;
    ``per_node``: each its own (a node's local disk), where the node without rank 0 has no summary."""
    rdzv = f"launcher.rdzv_endpoint=127.0.0.1:{free_port()}"
    dirs = [tmp_path / "run"] * 2 if disk == "shared" else [tmp_path / "node0", tmp_path / "node1"]
    procs = [start(*SMALL, *NODES, rdzv, f"hydra.run.dir={d}") for d in dirs]
    (rc0, out0, err0), (rc1, out1, err1) = finish(*procs, timeout=170)
    assert rc0 == 0 and rc1 == 0, (err0[-3000:], err1[-3000:])
    assert sorted(x.name for x in tmp_path.iterdir()) == sorted({d.name for d in dirs})
    ranks = {}
    for d in set(dirs):
        assert sorted(x.name for x in (d / ".hydra").iterdir()) == ["config.yaml", "overrides.yaml"]
        assert not [x for x in d.iterdir() if x.name.startswith(".hydra.claim-")]
        ranks.update({k: json.loads((d / f"rank{k}.json").read_text()) for k in (0, 1) if (d / f"rank{k}.json").exists()})
    assert sorted(ranks) == [0, 1]
    assert ranks[0]["world_size"] == ranks[1]["world_size"] == 2
    assert ranks[0]["decision_hash"] == ranks[1]["decision_hash"]
    assert ranks[0]["initial_checksum"] == ranks[1]["initial_checksum"]
    assert ranks[0]["param_checksum"] == ranks[1]["param_checksum"] is not None
    assert ranks[0]["comm_rounds"] == ranks[1]["comm_rounds"] > 0
    main = [d for d in set(dirs) if (d / "rank0.json").exists()]
    assert len(main) == 1  # rank 0 wrote the records, in its node's directory
    summary = json.loads((main[0] / "summary.json").read_text())
    last = summary["final"]
    assert summary["status"] == "complete" and summary["world_size"] == 2 and summary["method"] == "cosine+on_load"
    assert last["example_loads"] == 640 and last["comm_rounds"] == ranks[0]["comm_rounds"]
    assert [r["step"] for r in read_records(main[0])] == [0, last["step"]]
    outs = [out0, out1]
    if disk == "shared":
        assert outs == [f"echo-run: records in {dirs[0]}\n"] * 2
    else:
        other = dirs[1 - dirs.index(main[0])]
        assert not (other / "summary.json").exists() and not (other / "metrics.jsonl").exists()
        assert outs[dirs.index(main[0])] == f"echo-run: records in {main[0]}\n"
        assert outs[dirs.index(other)] == ("echo-run: this node's ranks finished; rank 0 ran on another node, "
                                            f"whose {other / 'summary.json'} holds the records.\n")


# -- sweeps through Hydra's submitit plugin


SUBMITIT = ("-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10")


@pytest.mark.timeout(180)
def test_a_sweep_through_submitit_lands_where_a_sweep_does_and_keeps_the_exit_status(tmp_path):
    """Three jobs, each in its own process: one completes, one diverges (1), one is refused (2, which
    wins); the runs land where a sweep puts them and the sweep's process says what each job said."""
    sweep = tmp_path / "sweep"
    (rc, out, err), = finish(start(*SUBMITIT, *SMALL, f"hydra.sweep.dir={sweep}", "optim.lr=0.05,1e5,-1"),
                             timeout=170)
    assert rc == 2, err[-3000:]
    # Each job printed in its own log; the sweep's process prints what each job said, in job order.
    assert out == f"echo-run: records in {sweep / '0'}\n" and "Traceback" not in err
    assert f"echo-run: run in {sweep / '1'} ended diverged; see its summary.json\n" in err
    assert "echo-run: error: job 2: optim.lr=-1.0 is not valid: it must be a positive number.\n" in err
    log = [line for line in err.splitlines() if line.startswith("echo-run: job 1's output: ")]
    assert len(log) == 1 and "Traceback" not in Path(log[0].split(": ")[-1]).read_text()
    assert "job 2's output" not in err  # the refusal says it all
    assert sorted(x.name for x in sweep.iterdir()) == [".echo-run", ".submitit", "0", "1", "multirun.yaml"]
    run = sweep / "0"  # a refused job leaves no directory
    assert OmegaConf.load(run / ".hydra" / "config.yaml").optim.lr == 0.05
    assert (run / ".hydra" / "overrides.yaml").read_text().count("optim.lr=0.05") == 1
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["final"]["example_loads"] == 640
    assert read_records(run)[-1] == summary["final"]
    assert json.loads((sweep / "1" / "summary.json").read_text())["status"] == "diverged"


# One torchrun job of 2 ranks whose pipeline is slowed to 200 examples/s per rank (1280 loads take at
# least 3.2 s of training), so that a signal after the first record lands mid-run.
SLOW_TORCHRUN_JOB = ("launcher=torchrun", "launcher.nproc_per_node=2", "comm=on_load", "budget.example_loads=1280",
                     "pipeline.examples_per_s=200", "train.check_every=4", "optim.lr=0.05")


def warn_when_training(job: subprocess.Popen, sweep: Path) -> Path:
    """Once job 0 has written its first record (both ranks are training), send submitit's warning
    (USR2) to the job's process and every process under it, as SLURM does before the time limit
    (the local executor sends it only to the job's process). Returns the job's submitit folder."""
    deadline = time.monotonic() + 200
    while not (sweep / "0" / "metrics.jsonl").exists() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job.poll() is None, job.communicate()
    folders = list((sweep / ".submitit").glob("[0-9]*"))
    assert len(folders) == 1  # named by the job's id, the pid of the local executor's controller
    controller = int(folders[0].name)
    procs = [p for p in _descendants(controller) if p != controller]
    assert len(procs) >= 4  # the job's process, torchrun, 2 ranks
    for p in procs:
        os.kill(p, signal.SIGUSR2)
    return folders[0]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_submitits_warning_stops_the_ranks_with_checkpoints_and_the_requeued_job_resumes(tmp_path):
    """Before its time limit (or a preemption) submitit warns a job with USR2. torchrun and the
    ranks ignore it; the echo-run job stops them with SIGTERM (they agree on a step and write
    checkpoints), then lets submitit requeue the job, which resumes and completes: the sweep exits 0."""
    sweep = tmp_path / "sweep"
    job = start(*SUBMITIT, *SMALL, f"hydra.sweep.dir={sweep}", *SLOW_TORCHRUN_JOB)
    try:
        folder = warn_when_training(job, sweep)
    finally:
        (rc, out, err), = finish(job, timeout=200)
    assert rc == 0, err[-3000:]
    assert out == f"echo-run: records in {sweep / '0'}\n"
    log = (folder / f"{folder.name}_0_log.err").read_text()
    stops = [line for line in log.splitlines() if line.startswith("echo-run worker: stopped by signal 15 at step ")]
    assert len(stops) == 2, log[-3000:]  # both ranks, at the same step, with a checkpoint
    step = int(stops[0].split(" at step ")[1].split(";")[0])
    assert stops[0] == stops[1] and step % 4 == 0
    assert f"Requeued job {folder.name}" in (folder / f"{folder.name}_0_log.out").read_text()  # submitit's log
    summary = json.loads((sweep / "0" / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["final"]["example_loads"] == 1280
    assert 0 < step < summary["final"]["step"]
    assert [r["step"] for r in read_records(sweep / "0")] == [0, summary["final"]["step"]]  # each record once
def _descendants(pid: int) -> list:
    """``pid`` and every process under it (from /proc)."""
    kids: dict = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        kids.setdefault(ppid, []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out


def test_a_submitit_warning_in_a_single_process_job_checkpoints_then_hands_over_to_submitit(tmp_path, monkeypatch):
    """launcher=local inside a submitit job: the warning (USR2) stops the run at the next check with a
    checkpoint, and only then does submitit's own handler (here a stand-in) get the signal to requeue."""
    from runner.errors import Preempted
    from runner.runs import claim
    from runner.train import run
    from tests.conftest import make_cfg

    monkeypatch.setenv("SUBMITIT_FOLDER", str(tmp_path / "submitit"))
    monkeypatch.delenv("SUBMITIT_PREEMPT_SIGNAL", raising=False)
    handed = []
    old = signal.signal(signal.SIGUSR2, lambda s, f: handed.append((s, torch_load_step(tmp_path / "run"))))
    try:
        cfg = make_cfg("model._target_=tests.helpers.Warned", "+model.warn_at=6", "model.width=4",
                       "train.check_every=4", "budget.steps=40", "eval.every_loads=null", "data.max_test_examples=32")
        claim(cfg, tmp_path / "run")
        with pytest.raises(Preempted):
            run(cfg, tmp_path / "run")
    finally:
        signal.signal(signal.SIGUSR2, old)
    # Alone, the run stops at the end of the step the warning came in (no collective to wait for): the
    # stand-in sees the checkpoint of step 6 already written.
    assert handed == [(signal.SIGUSR2, 6)]


def torch_load_step(run_dir: Path) -> int:
    import torch

    return torch.load(run_dir / "checkpoint" / "rank0.pt", weights_only=True)["counters"]["step"]
