"""How the jobs of a sweep (``echo-run -m``) tell the sweep's process how they ended.

Hydra's basic launcher runs every job in the sweep's own process. The submitit launcher
(``hydra/launcher=submitit_local`` or ``submitit_slurm``) runs each job in a process of its own, on
another machine under SLURM, keeps its output in a log under ``<sweep dir>/.submitit/`` and hands
back nothing the sweep's process could turn into an exit status. So a job that runs elsewhere writes
its outcome to ``<sweep dir>/.echo-run/job<num>.json``: once when it starts, once when it ends (its
exit status and the line it printed). The sweep's process reads them after the last job, prints
those lines and exits with the status they call for. The jobs can write there because submitit
needs the sweep directory on a disk they share anyway.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import List, Optional

from .errors import ConfigError

_sweep: dict = {"pid": None, "dir": None}  # set in the sweep's own process only


def folder(sweep_dir) -> Path:
    return Path(sweep_dir) / ".echo-run"


def begin(sweep_dir) -> None:
    """In the sweep's process, before the jobs start: this process is the sweep's, and the outcomes
    of an earlier sweep into the same directory are forgotten."""
    _sweep.update(pid=os.getpid(), dir=Path(sweep_dir))
    for p in folder(sweep_dir).glob("job*.json"):
        p.unlink(missing_ok=True)


def reset() -> None:
    _sweep.update(pid=None, dir=None)


def here() -> bool:
    """True in the sweep's own process (the job was started by Hydra's basic launcher)."""
    return _sweep["pid"] == os.getpid()


def note(sweep_dir, num: int, code: Optional[int], line: str = "", stream: str = "stderr") -> None:
    """A job's outcome (``code`` None: it has started), written whole (a rename) so that the sweep's
    process never reads half of one."""
    d = folder(sweep_dir)
    d.mkdir(parents=True, exist_ok=True)
    out = {"job": num, "code": code, "line": line, "stream": stream, "log": _log()}
    tmp = d / f"job{num}.json.tmp{os.getpid()}"
    tmp.write_text(json.dumps(out) + "\n")
    os.replace(tmp, d / f"job{num}.json")


def one_task() -> None:
    """Refuses a submitit job of several tasks (``hydra.launcher.nodes`` x ``tasks_per_node``): each
    task would run the whole run, all in the same run directory."""
    if "SUBMITIT_FOLDER" not in os.environ:
        return
    import submitit

    n = submitit.JobEnvironment().num_tasks
    if n > 1:
        raise ConfigError(f"this submitit job has {n} tasks (hydra.launcher.nodes x hydra.launcher.tasks_per_node), "
                          "and each would run the whole run in the same directory. Set hydra.launcher.nodes=1 "
                          "hydra.launcher.tasks_per_node=1: echo-run starts the ranks itself (launcher=torchrun "
                          "launcher.nproc_per_node=N); for several nodes, see the multi-node recipe in README.md.")


def _log() -> Optional[str]:
    """The file that holds this job's output, when submitit runs it."""
    if "SUBMITIT_FOLDER" not in os.environ:
        return None
    try:
        import submitit

        return str(submitit.JobEnvironment().paths.stderr)
    except (RuntimeError, KeyError):  # not a submitit job after all (submitit finds no environment)
        return None


def collect() -> List[dict]:
    """In the sweep's process, after the jobs: the outcomes of the jobs that ran elsewhere, in job
    order, their lines printed here. A job that started and never wrote its end (killed, or its
    process died) counts as failed (status 1)."""
    if _sweep["dir"] is None or not folder(_sweep["dir"]).is_dir():
        return []
    outs = []
    for p in folder(_sweep["dir"]).glob("job*.json"):
        try:
            outs.append(json.loads(p.read_text()))
        except (OSError, ValueError):
            continue  # not ours
    outs.sort(key=lambda o: o["job"])
    for o in outs:
        if o["code"] is None:
            o.update(code=1, stream="stderr", line=f"echo-run: error: job {o['job']} ended without saying how "
                                                   "(killed, or its process died).")
        if o["line"]:
            print(o["line"], file=sys.stdout if o["stream"] == "stdout" else sys.stderr)
        if o["code"] == 1 and o["log"]:  # the error is in the job's output
            print(f"echo-run: job {o['job']}'s output: {o['log']}", file=sys.stderr)
    return outs
