"""``launcher=torchrun``: run the training as a torchrun job on the run directory's resolved config.

The ``echo-run`` process has already validated the config and written it once to
``<run_dir>/.hydra/config.yaml``; here it only starts ``torchrun ... -m runner.worker <that file>``
as a subprocess whose output streams to this terminal, waits, and returns rank 0's summary. One
run directory per run (not per rank), and Hydra's multirun and submitit launchers work unchanged:
one torchrun per job. Inside a submitit job the scheduler's warning before its time limit stops the
ranks with checkpoints, and submitit requeues the job, which resumes from them.
"""
from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

from omegaconf import OmegaConf

from .config import config_hash
from .errors import ConfigError, Preempted


def command(cfg, run_dir: Path) -> List[str]:
    """The torchrun command line. One node: ``--standalone`` (a local rendezvous on a free port, so
    jobs side by side do not collide). Several nodes: torchrun's rendezvous settings; every node runs
    the same echo-run command, and the rendezvous id defaults to the config's hash, so they meet."""
    la = cfg.launcher
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={la.nproc_per_node}",
           f"--max-restarts={la.max_restarts}"]
    if str(la.nnodes) == "1":
        cmd.append("--standalone")
    else:
        rdzv_id = la.rdzv_id or "echo-run-" + config_hash(OmegaConf.to_container(cfg, resolve=True))
        cmd += [f"--nnodes={la.nnodes}", f"--rdzv-backend={la.rdzv_backend}",
                f"--rdzv-endpoint={la.rdzv_endpoint}", f"--rdzv-id={rdzv_id}"]
        if la.node_rank is not None:
            cmd.append(f"--node-rank={la.node_rank}")
    return cmd + ["-m", "runner.worker", str(Path(run_dir).resolve() / ".hydra" / "config.yaml")]


def torchrun(cfg, run_dir: Path) -> Optional[dict]:
    """Run the job; rank 0's summary, or ``{"status": "failed", ...}`` when a rank failed (its error
    is in the output above). None for a dry run (``launcher.dry_run=true``: the command is printed),
    and on a node of a multi-node job whose disk does not hold rank 0's summary (rank 0 ran on
    another node, which has the records)."""
    run_dir = Path(run_dir)
    cmd = command(cfg, run_dir)
    if cfg.launcher.dry_run:
        print(shlex.join(cmd))
        return None
    env = dict(os.environ)
    # torchrun would set 1 with a warning; the worker sets torch's own thread count from train.threads.
    env.setdefault("OMP_NUM_THREADS", str(cfg.train.threads or max(1, (os.cpu_count() or 1) // cfg.launcher.nproc_per_node)))
    warn = scheduler_signal()
    job = {"proc": None, "signal": None}

    def forward(signum, frame):
        # SIGTERM (a scheduler's preemption) goes on to torchrun, which stops the workers; they write
        # checkpoints. SIGINT from a terminal reaches torchrun and the workers directly. A submitit
        # job's warning (below) goes on as SIGTERM.
        job["signal"] = signum
        if signum != signal.SIGINT and job["proc"] is not None and job["proc"].poll() is None:
            job["proc"].send_signal(signal.SIGTERM)

    watched = (signal.SIGTERM, signal.SIGINT) + ((warn,) if warn else ())
    old = {s: signal.signal(s, forward) for s in watched}  # before the start: no signal falls in between
    try:
        # Under submitit the scheduler's warning reaches every process of the job; torchrun and the
        # ranks would die of it (its default action), so they ignore it and hear it from here as SIGTERM.
        job["proc"] = proc = subprocess.Popen(
            cmd, env=env, preexec_fn=(lambda: signal.signal(warn, signal.SIG_IGN)) if warn else None)
        if job["signal"] not in (None, signal.SIGINT):
            proc.send_signal(signal.SIGTERM)  # it came while torchrun was starting
        try:
            rc = proc.wait()
        finally:
            # Whatever ends this process (an exception from another signal handler) must not leave
            # torchrun running on its own in the run directory: stop it as a preemption would.
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if rc != 0 and warn is not None and job["signal"] == warn:
        requeue(old[warn], warn)  # the ranks have written checkpoints and stopped
    if rc != 0 and job["signal"] is not None:
        raise Preempted(f"stopped by signal {job['signal']}; the ranks wrote checkpoints: run the same "
                        "command again to continue")
    refused = refusals(run_dir)
    if rc != 0 and refused:
        raise ConfigError(refused)
    if rc != 0:
        print(f"echo-run: error: the torchrun job exited with status {rc}; the failing rank's error is shown "
              f"above. Checkpoints in {run_dir} are kept: fix the cause and run the same command to continue.",
              file=sys.stderr)
        return {"status": "failed", "exit_code": rc}
    summary = run_dir / "summary.json"
    if not summary.exists() and str(cfg.launcher.nnodes) != "1":
        # Every rank of this node ended well, and torchrun's agents wait for each other before they
        # exit, so rank 0 (on another node) has written its summary there: this disk is not shared.
        print(f"echo-run: this node's ranks finished; rank 0 ran on another node, whose {summary} holds "
              "the records.")
        return None
    if not summary.exists():
        print(f"echo-run: error: the torchrun job ended but rank 0 wrote no {summary}.", file=sys.stderr)
        return {"status": "failed", "exit_code": rc}
    return json.loads(summary.read_text())


def refusals(run_dir: Path) -> Optional[str]:
    """The paragraph of the lowest rank that refused its input (``runner.worker``), the files removed."""
    found = sorted(Path(run_dir).glob(".refused.rank*"), key=lambda p: int(p.name.rsplit("rank", 1)[1]))
    text = found[0].read_text() if found else None
    for p in found:
        p.unlink(missing_ok=True)
    return text


def requeue(handler, signum: int) -> None:
    """Hand a submitit job's warning to submitit's own handler, once the checkpoints are written: it
    requeues the job (and ends this process), and the requeued job resumes from them. When submitit
    will not requeue (hydra.launcher.max_num_timeout spent) the stop is a pre-emption like SIGTERM's."""
    if not callable(handler):
        return
    from submitit.core.utils import UncompletedJobError

    try:
        handler(signum, None)
    except UncompletedJobError:
        pass


def scheduler_signal() -> Optional[int]:
    """The signal with which a submitit job (Hydra's submitit launcher) is warned before its time
    limit or a preemption (USR2 unless ``SUBMITIT_PREEMPT_SIGNAL`` names another); None outside one."""
    if "SUBMITIT_FOLDER" not in os.environ:  # set by submitit in the process that runs the job
        return None
    return getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"), None)
