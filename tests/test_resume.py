"""Exact resume: a run killed at any point and started again with the same command ends with the
records (wall-clock fields aside), summary and model of a run that was never interrupted.

Most launches are forked from this process (the real ``runner.cli.main`` with the command's
arguments, minus the ~15 s of imports a fresh interpreter pays); the kill points are reached
deterministically by wrapping a function in the child before it starts. A pre-emption is a
SIGTERM from outside, an external kill a SIGKILL from outside as soon as a record lands.
"""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from runner import checkpoint
from runner.schema import ConfigError
from tests.conftest import read_records, without_wall

# Digits, a small CNN, cosine echoing, a simulated GPU (deterministic sim_s and idle_s) and a pipeline
# slowed to 2,000 examples/s for real, so an external signal lands mid-run: 6 records, ~1 s of training.
ARGS = ("logger.progress=false", "train.threads=1", "model._target_=tests.helpers.Tripwire", "model.width=8",
        "data.max_test_examples=120",
        "budget.example_loads=1600", "eval.every_loads=320", "hardware=gpu_nvme", "pipeline.examples_per_s=2000")


def fork_cli(run_dir: Path, log: Path, kill: str | None = None, args: tuple = ARGS) -> int:
    """Run ``echo-run ARGS hydra.run.dir=run_dir`` in a forked child; returns its exit status, or
    -9 when it was killed. ``kill="evaluate:2"`` SIGKILLs the child inside its 2nd evaluation,
    ``"save:2"`` just before its 2nd checkpoint write, ``"rename:1"`` after its 1st checkpoint's
    bytes are on disk but before the rename."""
    return wait(start(run_dir, log, kill, args))


def wait(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def start(run_dir: Path, log: Path, kill: str | None = None, args: tuple = ARGS) -> int:
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 70
        try:
            out = open(log, "w", buffering=1)
            os.dup2(out.fileno(), 1)
            os.dup2(out.fileno(), 2)
            sys.stdout = sys.stderr = out
            if kill:
                _arm(kill)
            sys.argv = ["echo-run", *args, f"hydra.run.dir={run_dir}"]
            from runner.cli import main

            try:
                main()
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
        except BaseException as e:  # noqa: BLE001 - report anything to the parent through the log
            print(f"child failed: {e!r}", file=sys.stderr)
        finally:
            sys.stderr.flush()
            os._exit(code)
    return pid


def _arm(kill: str) -> None:
    """In the child: SIGKILL this process at the named point. The model (``tests.helpers.Tripwire``)
    trips at the n-th evaluation or checkpoint; a kill between the two renames of a checkpoint write
    wraps ``os.replace``, the only file system call in between."""
    what, n = kill.split(":")
    if what != "rename":
        os.environ["ECHO_RUN_TRIPWIRE"] = kill
        return
    calls = {"n": 0}
    real_replace = os.replace

    def replace(src, dst, *a, **k):
        if str(dst).endswith("rank0.pt"):
            calls["n"] += 1
            if calls["n"] == int(n):
                os.kill(os.getpid(), signal.SIGKILL)  # the new checkpoint is in rank0.tmp<pid>, the newest in rank0.prev.pt
        return real_replace(src, dst, *a, **k)

    os.replace = replace


def ckpt(run_dir: Path) -> dict:
    return torch.load(checkpoint.path(run_dir, 0), weights_only=True)


def lines(run_dir: Path) -> int:
    p = run_dir / "metrics.jsonl"
    return len(p.read_text().splitlines()) if p.exists() else 0


def deterministic(summary: dict) -> dict:
    """A summary less what the wall clock or the machine decides."""
    s = dict(summary, final=without_wall([summary["final"]])[0])
    reached = s["target"]["reached"]
    if reached:
        s["target"] = dict(s["target"], reached={k: v for k, v in reached.items() if k != "wall_s"})
    return {k: v for k, v in s.items() if k not in ("git_revision", "versions")}


@pytest.fixture(scope="module")
def imported() -> None:
    # Imported once here, so that each forked run starts in a second instead of importing for 15.
    import runner.cli, runner.train, sklearn.datasets, torch._dynamo, transformers  # noqa: F401, E401


@pytest.fixture(scope="module")
def reference(imported, tmp_path_factory) -> Path:
    ref = tmp_path_factory.mktemp("ref") / "run"
    assert fork_cli(ref, ref.parent / "log") == 0, (ref.parent / "log").read_text()
    return ref


@pytest.mark.slow
def test_killed_and_preempted_run_resumes_exactly(reference, tmp_path):
    run, log = tmp_path / "run", tmp_path / "log"

    # 1. SIGKILL during the second evaluation, before any checkpoint exists.
    assert fork_cli(run, log, "evaluate:2") == -9
    assert lines(run) == 1 and not checkpoint.path(run, 0).exists()

    # 2. Start again (from scratch: no checkpoint); SIGKILL between record 3 and its checkpoint.
    assert fork_cli(run, log, "save:2") == -9
    assert lines(run) == 3 and ckpt(run)["counters"]["records"] == 2  # record 3 will be replayed

    # 3. SIGKILL between the two renames of the next save: the newest checkpoint has just become
    # rank0.prev.pt, the new one is still a temporary file; the next start must use rank0.prev.pt.
    before = checkpoint.path(run, 0).read_bytes()
    assert fork_cli(run, log, "rename:1") == -9
    assert checkpoint.prev_path(run, 0).read_bytes() == before and not checkpoint.path(run, 0).exists()
    assert list((run / "checkpoint").glob("rank0.tmp*"))  # the interrupted write's leftover
    assert checkpoint.load(run, 0)["counters"]["records"] == 2

    # 4. Pre-empted with SIGTERM mid-run, as a cluster does: it checkpoints and exits 143.
    n = lines(run)
    pid = start(run, log)
    deadline = time.monotonic() + 240
    while lines(run) <= n and time.monotonic() < deadline:
        time.sleep(0.002)  # until this process has written a record of its own
    os.kill(pid, signal.SIGTERM)
    assert wait(pid) == 143, log.read_text()
    err = log.read_text()
    assert "run the same command again" in err and "Traceback" not in err
    st = ckpt(run)["counters"]
    assert 0 < st["example_loads"] < 1600 and not (run / "summary.json").exists()
    assert not list((run / "checkpoint").glob("rank0.tmp*"))  # a good save clears stale leftovers

    # 5. An external SIGKILL as soon as one more record lands.
    n = lines(run)
    pid = start(run, log)
    deadline = time.monotonic() + 240
    while lines(run) <= n and time.monotonic() < deadline:
        time.sleep(0.002)
    os.kill(pid, signal.SIGKILL)
    assert wait(pid) == -9, log.read_text()
    assert not (run / "summary.json").exists()

    # 6. The newest checkpoint is damaged on disk (a block of its middle zeroed: torch.load alone would
    # read it). The same command says so, moves it aside, continues from the previous one, and finishes.
    assert checkpoint.prev_path(run, 0).exists()
    with open(checkpoint.path(run, 0), "r+b") as f:
        f.seek(f.seek(0, os.SEEK_END) // 2)
        f.write(b"\0" * 4096)
    assert fork_cli(run, log) == 0, log.read_text()
    err = log.read_text()
    assert "rank0.pt cannot be read" in err and "continues from the previous checkpoint" in err, err
    assert checkpoint.damaged_path(run, 0).exists()

    got, want = read_records(run), read_records(reference)
    assert len(want) == 7 and [r["example_loads"] for r in got] == [r["example_loads"] for r in want]
    assert without_wall(got) == without_wall(want)  # every field, bit for bit, wall clocks aside
    assert got[-1]["echo_steps"] > 0 and got[-1]["sim_s"] > 0
    summary = json.loads((run / "summary.json").read_text())
    assert deterministic(summary) == deterministic(json.loads((reference / "summary.json").read_text()))
    a, b = ckpt(run), ckpt(reference)
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert all(torch.equal(x["momentum_buffer"], y["momentum_buffer"])
               for x, y in zip(a["opt"]["state"].values(), b["opt"]["state"].values()))

    # 7. A complete run is left alone by the same command.
    snapshot = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert fork_cli(run, log) == 0 and "nothing to do" in log.read_text()
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == snapshot


# Gradient accumulation over k=3 micro-batches with a record and a checkpoint every 2 batches: the
# checkpoint at step 2 falls in the middle of an accumulation.
ACCUM = ("logger.progress=false", "train.threads=1", "model._target_=tests.helpers.Tripwire", "model.width=8",
         "data.max_test_examples=64", "comm=grad_accum", "comm.k=3", "schedule=none", "budget.example_loads=640",
         "eval.every_loads=64")


@pytest.mark.slow
def test_a_run_killed_in_the_middle_of_a_gradient_accumulation_resumes_exactly(tmp_path):
    ref, run, log = tmp_path / "ref", tmp_path / "run", tmp_path / "log"
    assert fork_cli(ref, log, args=ACCUM) == 0, log.read_text()
    assert fork_cli(run, log, "evaluate:3", args=ACCUM) == -9  # killed at step 4's record
    st = ckpt(run)
    assert st["counters"]["step"] == 2 and st["comm"]["micro"] % 3 == 2 and st["comm"]["grads"] is not None
    assert fork_cli(run, log, args=ACCUM) == 0, log.read_text()
    assert without_wall(read_records(run)) == without_wall(read_records(ref))
    a, b = ckpt(run)["model"], ckpt(ref)["model"]
    assert all(torch.equal(a[k], b[k]) for k in b)


@pytest.mark.slow
def test_a_run_with_loader_workers_killed_mid_epoch_resumes_exactly(tmp_path):
    """DataLoader workers ahead of the trainer when it dies: the checkpoint holds the trainer's own
    position (mid-epoch: 10 of the 44 batches of an epoch per record), and a random augmentation
    seeded per example gives the resumed run the views the unbroken one saw."""
    args = (*ARGS[:3], "model.width=4", "data.max_test_examples=64", "budget.example_loads=1600",
            "eval.every_loads=320", "data.workers=2", "dataset=fashion_mnist", "data.root={root}",
            "data.download=false", "data.augment=true", "data.batch_size=32")
    root = tmp_path / "idx"
    from tests.test_datasets import write_idx

    import numpy as np

    write_idx(root, np.random.default_rng(1), gz=True, n=(1408, 64))
    args = tuple(a.format(root=root) for a in args)
    ref, run, log = tmp_path / "ref", tmp_path / "run", tmp_path / "log"
    assert fork_cli(ref, log, args=args) == 0, log.read_text()
    assert fork_cli(run, log, "evaluate:4", args=args) == -9
    assert ckpt(run)["source"]["pos"] not in (0, None)  # mid-epoch
    assert fork_cli(run, log, args=args) == 0, log.read_text()
    assert without_wall(read_records(run)) == without_wall(read_records(ref))
    a, b = ckpt(run)["model"], ckpt(ref)["model"]
    assert all(torch.equal(a[k], b[k]) for k in b)


# Batch and example echoing through the trainer (stochastic: the test above; adaptive, on the simulated
# clock: tests/test_simclock.py), on a simulated loader 3 step-times per batch: 20 fresh batches of 32
# digits, a record every 128 loads.
POLICY = {"batch": ("echo=batch", "echo.factor=3", "train.amp=fp16"),  # fp16: the loss scaler resumes too
          "example": ("echo=example", "echo.factor=2", "echo.buffer=64")}
SMALL = ("logger.progress=false", "train.threads=1", "model._target_=tests.helpers.Tripwire", "model.width=4",
         "data.max_test_examples=64", "budget.example_loads=640", "eval.every_loads=128", "hardware=ratio",
         "hardware.ratio=3")


@pytest.mark.slow
@pytest.mark.parametrize("policy", sorted(POLICY))
def test_batch_and_example_echoing_killed_mid_run_resume_exactly(imported, tmp_path, policy):
    """Killed by SIGKILL inside its 4th evaluation (checkpoints of 128 and 256 loads on disk), then the
    same command: the records, the model and the loss scaler of an unbroken run."""
    args = (*SMALL, *POLICY[policy])
    ref, run, log = tmp_path / "ref", tmp_path / "run", tmp_path / "log"
    assert fork_cli(ref, log, args=args) == 0, log.read_text()
    want = read_records(ref)
    # Batch echoing uses every fresh batch 3 times; example echoing every example twice.
    assert want[-1]["step"] == {"batch": 20 * 3, "example": 2 * 640 // 32}[policy]
    assert want[-1]["example_loads"] == 640 and want[-1]["echo_steps"] > 0
    assert fork_cli(run, log, "evaluate:4", args=args) == -9
    assert ckpt(run)["counters"]["example_loads"] == 256
    assert fork_cli(run, log, args=args) == 0, log.read_text()
    assert without_wall(read_records(run)) == without_wall(want)
    a, b = ckpt(run), ckpt(ref)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in b["model"])
    assert a["scaler"] == b["scaler"] and (policy != "batch" or a["scaler"]["scale"] > 1)


def test_full_disk_on_checkpoint_keeps_the_previous_one(tmp_path):
    """ENOSPC for real: the temporary checkpoint file is a link to /dev/full."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    state = {"w": torch.arange(10.0), "counters": {"step": 1}}
    checkpoint.save(tmp_path, 0, state)
    before = checkpoint.path(tmp_path, 0).read_bytes()
    tmp = checkpoint.path(tmp_path, 0).with_suffix(f".tmp{os.getpid()}")
    os.symlink("/dev/full", tmp)
    with pytest.raises(ConfigError) as e:
        checkpoint.save(tmp_path, 0, {"w": torch.zeros(1000)})
    msg = str(e.value)
    assert os.strerror(errno.ENOSPC) in msg and "previous checkpoint" in msg and "same command" in msg
    assert checkpoint.path(tmp_path, 0).read_bytes() == before
    assert not tmp.exists() and not tmp.is_symlink()
    assert torch.equal(checkpoint.load(tmp_path, 0)["w"], state["w"])


def test_a_damaged_checkpoint_is_refused_not_overwritten(tmp_path):
    p = checkpoint.path(tmp_path, 0)
    p.parent.mkdir()
    p.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="no readable checkpoint of rank 0 remains.*rank0.pt cannot be read"):
        checkpoint.load(tmp_path, 0)
    assert p.read_bytes() == b"not a checkpoint"


def damage(p: Path) -> None:
    """Zero a block in the middle of ``p`` (inside the tensors' bytes: torch.load alone would read it)."""
    with open(p, "r+b") as f:
        f.seek(f.seek(0, os.SEEK_END) // 2)
        f.write(b"\0" * 64)


def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, capsys):
    for step in (10, 20):
        checkpoint.save(tmp_path, 0, {"counters": {"step": step}, "w": torch.randn(1000)})
    damage(checkpoint.path(tmp_path, 0))
    assert checkpoint.load(tmp_path, 0)["counters"]["step"] == 10
    err = capsys.readouterr().err
    assert "rank0.pt cannot be read" in err and "CRC-32" in err and "(step 10)" in err
    # Moved aside, so that the next save does not rotate it in as the previous checkpoint.
    assert not checkpoint.path(tmp_path, 0).exists() and checkpoint.damaged_path(tmp_path, 0).exists()
    checkpoint.save(tmp_path, 0, {"counters": {"step": 20}})
    assert checkpoint.load(tmp_path, 0)["counters"]["step"] == 20
    assert checkpoint.load(tmp_path, 0)["counters"]["step"] == 20 and not capsys.readouterr().err
    # Both damaged: nothing readable remains, and the run is refused with both reasons.
    damage(checkpoint.prev_path(tmp_path, 0))
    checkpoint.path(tmp_path, 0).write_bytes(b"")
    with pytest.raises(ConfigError, match="rank0.pt: BadZipFile.*rank0.prev.pt: its record .* fails its CRC-32"):
        checkpoint.load(tmp_path, 0)
    # A readable file of another program is not a checkpoint either.
    torch.save({"w": torch.zeros(3)}, checkpoint.path(tmp_path, 1))
    with pytest.raises(ConfigError, match="holds no checkpoint of echo-run"):
        checkpoint.load(tmp_path, 1)


def test_ranks_resume_from_the_newest_step_they_all_saved(tmp_path):
    def saved(rank: int, *steps: int) -> None:
        for s in steps:
            checkpoint.save(tmp_path, rank, {"counters": {"step": s}})

    def agreed(world: int) -> list:
        newest = [checkpoint.load(tmp_path, r) for r in range(world)]
        low = min(n["counters"]["step"] if n else -1 for n in newest)
        reduce_max = lambda v: [-float(low)]  # what the all-reduce MAX of -step over the ranks returns
        got = [checkpoint.load_agreed(tmp_path, r, reduce_max) for r in range(world)]
        return [g and g["counters"]["step"] for g in got]

    saved(0, 10, 20)  # rank 1 died after the collective of step 20, before its own save
    saved(1, 10)
    assert agreed(2) == [10, 10]
    saved(1, 20)
    assert agreed(2) == [20, 20]
    saved(2, 20)
    os.replace(checkpoint.path(tmp_path, 2), checkpoint.prev_path(tmp_path, 2))  # killed between the renames
    assert agreed(3) == [20, 20, 20]
    damage(checkpoint.path(tmp_path, 1))  # rank 1's newest (20) is damaged: every rank resumes from 10
    assert agreed(2) == [10, 10]
    saved(1, 20)
    saved(0, 30, 40)  # more than one save apart: cannot happen, and is refused rather than guessed
    with pytest.raises(ConfigError, match="cannot resume together"):
        agreed(2)
    for r in range(3):
        checkpoint.path(tmp_path, r).unlink(missing_ok=True)
        checkpoint.prev_path(tmp_path, r).unlink(missing_ok=True)
    saved(0, 10)  # a rank with no checkpoint at all: every rank starts afresh
    assert agreed(2) == [None, None]


# Two torchrun ranks, data-parallel echoing (average on every fresh batch), a pipeline slowed to
# 400 examples/s per rank so that a kill lands mid-run.
TORCHRUN = ("launcher=torchrun", "launcher.nproc_per_node=2", "launcher.max_restarts=1", "comm=on_load",
            "schedule=constant", "schedule.p=0.5", "data.batch_size=16", "logger.progress=false", "train.threads=1",
            "model.width=8", "data.max_test_examples=64", "budget.example_loads=960", "eval.every_loads=192",
            "pipeline.examples_per_s=400")


def worker_pid(run_dir: Path, rank: int):
    """The process id of rank ``rank``'s torchrun worker training in ``run_dir`` (None if none)."""
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
            env = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"runner.worker" in cmd and any(str(run_dir).encode() in a for a in cmd) and f"RANK={rank}".encode() in env:
            return int(proc.name)
    return None


@pytest.mark.slow
def test_torchrun_restarts_a_killed_rank_and_ends_as_an_unbroken_run(tmp_path):
    from tests.conftest import ECHO_RUN, ROOT

    env = dict(os.environ, OMP_NUM_THREADS="1")
    ref, run = tmp_path / "ref", tmp_path / "run"
    p = subprocess.run([*ECHO_RUN, *TORCHRUN, f"hydra.run.dir={ref}"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=400)
    assert p.returncode == 0, p.stderr[-3000:]

    job = subprocess.Popen([*ECHO_RUN, *TORCHRUN, f"hydra.run.dir={run}"], cwd=ROOT, env=env, start_new_session=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        while lines(run) < 2 and job.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)  # until rank 0 has written the record (and checkpoint) at 192 loads
        victim = worker_pid(run.resolve(), 1)
        assert victim is not None and lines(run) < 7, "the job ended before rank 1 could be killed"
        os.kill(victim, signal.SIGKILL)
        out, _ = job.communicate(timeout=400)
    finally:
        if job.poll() is None:  # a hang: take torchrun and its workers down with it
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
    assert job.returncode == 0, out[-3000:]
    assert "exitcode: -9" in out and "local_rank: 1" in out  # torchrun saw the kill, and restarted

    assert without_wall(read_records(run)) == without_wall(read_records(ref))
    assert len(read_records(ref)) == 7
    summary = lambda d: deterministic(json.loads((d / "summary.json").read_text()))
    assert summary(run) == summary(ref) and summary(run)["status"] == "complete"
    for k in (0, 1):  # the same coins drawn and the same final model on both ranks
        assert json.loads((run / f"rank{k}.json").read_text()) == json.loads((ref / f"rank{k}.json").read_text())
