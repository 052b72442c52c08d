"""``launcher=torchrun``: run the training as a torchrun job on the run directory's resolved config.

The ``echo-run`` process has already validated the config and written it once to
``<run_dir>/.hydra/config.yaml``; here it only starts ``torchrun ... -m runner.worker <that file>``
as a subprocess whose output streams to this terminal, waits, and returns rank 0's summary. One
run directory per run (not per rank), and Hydra's multirun and submitit launchers work unchanged:
one torchrun per job.
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
    is in the output above). ``launcher.dry_run=true``: print the command and return None."""
    from .train import Preempted

    run_dir = Path(run_dir)
    cmd = command(cfg, run_dir)
    if cfg.launcher.dry_run:
        print(shlex.join(cmd))
        return None
    env = dict(os.environ)
    # torchrun would set 1 with a warning; the worker sets torch's own thread count from train.threads.
    env.setdefault("OMP_NUM_THREADS", str(cfg.train.threads or max(1, (os.cpu_count() or 1) // cfg.launcher.nproc_per_node)))
    proc = subprocess.Popen(cmd, env=env)
    got = {"signal": None}

    def forward(signum, frame):
        # SIGTERM (a scheduler's preemption) goes on to torchrun, which stops the workers; they write
        # checkpoints. SIGINT from a terminal reaches torchrun and the workers directly.
        got["signal"] = signum
        if signum == signal.SIGTERM:
            proc.send_signal(signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        rc = proc.wait()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if rc != 0 and got["signal"] is not None:
        raise Preempted(f"stopped by signal {got['signal']}; the ranks wrote checkpoints: run the same "
                        "command again to continue")
    if rc != 0:
        print(f"echo-run: error: the torchrun job exited with status {rc}; the failing rank's error is shown "
              f"above. Checkpoints in {run_dir} are kept: fix the cause and run the same command to continue.",
              file=sys.stderr)
        return {"status": "failed", "exit_code": rc}
    summary = run_dir / "summary.json"
    if not summary.exists():
        print(f"echo-run: error: the torchrun job ended but rank 0 wrote no {summary}.", file=sys.stderr)
        return {"status": "failed", "exit_code": rc}
    return json.loads(summary.read_text())
