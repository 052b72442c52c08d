"""``echo-advise measure``: this machine on the user's workload, as the simulated clock needs it.

What is measured, each with its spread:
- the pipeline's throughput (examples/s): the real ``runner.pipeline`` Source with the configured
  workers, built as the trainer builds it; the time from its start to its first batch (the workers
  starting); after a warm-up, ``windows`` windows of whole rounds of the workers (a multiple of
  ``data.workers`` batches, at least ``window_s`` seconds each), nothing consuming the batches but
  this loop;
- the step time alone: ``runner.step.train_step`` (forward, backward, optimizer) on a batch already
  on the device, the device synchronised around each, after a few warm-up steps; the median of
  ``steps`` (the accelerator's time);
- the step time in the loop: the same steps taken as the trainer takes them while the pipeline runs
  (a fresh batch when one is ready, else the held one), ``windows`` windows of ``window_s``; the
  median over windows of a window's time per step. It adds what receiving batches costs the
  training process (the feeder thread, the workers' batches unpickled) and, where workers share its
  CPU, their competition. This one is the profile's ``step_s``: it is what the runs pay. (A pipeline
  that loads in the training thread has no loop timing: its step is the step alone.)
- one evaluation pass (the runs' evaluations are off the training clock, but cost real time, and an
  unthrottled pipeline goes on loading meanwhile), the fastest of three, and how many batches the
  pipeline loaded ahead during one (at most its depth: the feeder's queue and the workers' tasks);
- under ``launcher=torchrun``: one all-reduce of the model's parameter bytes and one of a single
  number (latency), timed by ``torchrun -m runner.advise.allreduce`` on the configured ranks
  (gloo on CPU, NCCL on GPU), the slowest rank's time, median of repeats.

R = batch load time / step time = (batch_size / throughput) / step_s. Its spread is the range that
the quartiles of both give (slowest loading over fastest step, and the reverse).

The pipeline's throughput is measured with nothing else running: on a machine whose loader workers
and training share the same CPU cores, the workers are slower while the trainer computes, which
``echo-report clock-check`` then shows as the clock's error (``info.loop_fresh_batches_per_s`` is
the rate the loop got meanwhile); on a GPU machine they hardly compete.
"""
from __future__ import annotations

import json
import math
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, List, Optional

import numpy as np

from ..errors import ConfigError
from . import profile as prof


class starting:
    """Names the part of the workload that failed: an error of the user's data set or model keeps its
    type and traceback (exit 1) and gains a note saying what echo-advise was doing; a ConfigError
    (bad input) passes as it is."""

    def __init__(self, what: str, cfg=None):
        self.what = what

    def __enter__(self):
        return self

    def __exit__(self, kind, e, tb) -> bool:
        if isinstance(e, Exception) and not isinstance(e, ConfigError):
            e.add_note(f"echo-advise: {self.what} raised this error; nothing was measured or written.")
        return False  # never swallowed


def quartiles(xs) -> dict:
    a = np.asarray(xs, dtype=float)
    q1, med, q3 = np.percentile(a, [25, 50, 75])
    return {"median": float(med), "q1": float(q1), "q3": float(q3), "min": float(a.min()), "max": float(a.max()),
            "n": int(len(a))}


def time_pipeline(source, B: int, workers: int, depth: int, windows: int, window_s: float,
                  clock: Callable[[], float] = time.perf_counter) -> dict:
    """Throughput of a started Source (see the module's docstring); returns its quartiles and the
    first batch (on the device) for the step timing."""
    t0 = clock()
    first = next(source)
    t_first = clock() - t0
    # Warm-up: whatever the pipeline loaded ahead while it started comes out here.
    n_warm = max(depth + 1, 3)
    t1 = clock()
    for _ in range(n_warm):
        next(source)
    per_batch = max((clock() - t1) / n_warm, 1e-5)
    rounds = max(1, workers)  # W workers deliver in rounds of W batches: a window is whole rounds
    k = rounds * max(1, math.ceil(window_s / (per_batch * rounds)))
    rates, t = [], clock()
    for _ in range(windows):
        for _ in range(k):
            next(source)
        now = clock()
        rates.append(k * B / (now - t))
        t = now
    return {"examples_per_s": quartiles(rates), "window_batches": k, "warmup_batches": n_warm,
            "first_batch_s": t_first, "first": first}


def time_steps(step: Callable[[], object], sync: Callable[[], None], steps: int, warmup: int = 3,
               clock: Callable[[], float] = time.perf_counter) -> dict:
    times = []
    for i in range(warmup + steps):
        sync()
        t = clock()
        step()
        sync()
        if i >= warmup:
            times.append(clock() - t)
    return quartiles(times)


def time_loop(source, step: Callable[[object], object], sync: Callable[[], None], first, windows: int,
              window_s: float, min_steps: int = 5, clock: Callable[[], float] = time.perf_counter) -> dict:
    """Steps as the trainer takes them beside the running pipeline: a fresh batch when one is ready,
    the held one otherwise (adaptive echoing). The step time per window (its time over its steps)
    then includes what receiving batches costs the training process (the feeder thread, unpickling
    the workers' batches) and, where they share the CPU, the workers' competition; ``fresh_per_s`` is
    how many fresh batches per second the loop took."""
    batch, times, fresh = first, [], []
    for _ in range(windows):
        sync()
        t0, n, f = clock(), 0, 0
        while n < min_steps or clock() - t0 < window_s:
            if source.ready():
                batch = next(source)
                f += 1
            step(batch)
            n += 1
        sync()
        dt = clock() - t0
        times.append(dt / n)
        fresh.append(f / dt)
    return {"step_s": quartiles(times), "fresh_per_s": quartiles(fresh)}


def rate_of(pipe: dict) -> float:
    return pipe["examples_per_s"]["median"]


def loaded_while(source, pause: Callable[[], float], batch_load_s: float, depth: int,
                 clock: Callable[[], float] = time.perf_counter) -> dict:
    """How many batches the pipeline loads ahead while the loop evaluates: the ready batches taken
    first, one evaluation (``pause`` returns its time), then the batches that come at once (within a
    quarter of a load time each), at most ``depth`` and one more to tell."""
    for _ in range(10 * (depth + 1)):  # drained: what is counted next was loaded during the evaluation
        if not (source.background and source.ready()):
            break
        next(source)
    eval_s = pause()
    n = 0
    for _ in range(depth + 1):
        t = clock()
        next(source)
        if clock() - t > 0.25 * batch_load_s:
            break  # this one had to be loaded: it was not ready
        n += 1
    return {"eval_s": eval_s, "batches": min(n, depth), "depth": depth}


def measure_workload(cfg, *, windows: int = 5, window_s: float = 0.5, steps: int = 20, log=print) -> dict:
    """The measurements of the module's docstring for the composed config ``cfg``."""
    import torch

    from .. import accel, data, parts
    from ..comm import Local
    from ..dist import pick_device
    from ..step import evaluate, train_step

    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    torch.manual_seed(cfg.seed)
    dev = pick_device(cfg.train.device)
    d, p = cfg.data, cfg.pipeline
    with starting("building the data set"):
        splits = data.build(d)
    with starting("building the model and its optimizer"):
        model = parts.model(cfg, splits.info, dev)
        net = accel.compile_net(model, cfg.train)
        opt = parts.optimizer(cfg, model)
    amp, scaler = parts.precision(cfg.train, dev)
    with starting("building the input pipeline"):
        source = parts.source(cfg, splits, dev)
    depth = int(p.prefetch) + int(d.workers) * int(d.prefetch_factor or 0)

    def one_eval() -> float:
        t = time.perf_counter()
        evaluate(model, parts.eval_batches(cfg, splits.test, dev), splits.task, amp)
        accel.sync(dev)
        return time.perf_counter() - t

    log(f"measure: the pipeline ({d.workers} workers, batch {d.batch_size}), {windows} windows of at least "
        f"{window_s:g} s ...")
    comm = Local(model)
    one_step = lambda b: train_step(net, opt, scaler, b, comm, amp, cfg.optim.grad_clip)  # noqa: E731
    synchronous = not (p.background if p.background is not None else (p.examples_per_s is not None or d.workers > 0))
    try:
        with starting("the input pipeline"):
            source.ready()  # started (workers start, the feeder thread runs), as the trainer starts it
            pipe = time_pipeline(source, d.batch_size, d.workers, depth, windows, window_s)
        with starting("evaluating the model"):
            eval_s = one_eval()  # the pipeline is open and idle (its buffers full), as between records
        batch = pipe.pop("first")
        log(f"measure: the step (forward, backward, optimizer), {steps} steps alone, then beside the pipeline ...")
        with starting("a training step"):
            # The pipeline is idle meanwhile: its buffers are full and nothing takes from them.
            alone = time_steps(lambda: one_step(batch), lambda: accel.sync(dev), steps)
            loop = None if synchronous else time_loop(source, one_step, lambda: accel.sync(dev), batch, windows,
                                                      window_s)
        with starting("evaluating the model"):
            ahead = None if synchronous else loaded_while(source, one_eval, d.batch_size / rate_of(pipe), depth)
    finally:
        source.close()
    with starting("evaluating the model"):
        eval_s = min(eval_s, one_eval())
    params = sum(t.numel() * t.element_size() for t in model.parameters())
    # The clock's step time is the step as the loop takes it beside the pipeline (what the runs pay); the
    # step alone is the accelerator's, reported beside it.
    if ahead is not None:
        eval_s = min(eval_s, ahead["eval_s"])
    return {"pipeline": pipe, "step_s": loop["step_s"] if loop else alone, "step_alone_s": alone,
            "loop": loop, "loaded_during_eval": ahead, "eval_s": eval_s, "task": splits.task, "train_size": len(splits.train),
            "param_bytes": int(params), "device": str(dev), "depth": depth, "synchronous": synchronous}


# ------------------------------------------------------------------------------- the all-reduce
def time_allreduce(cfg, nbytes: int, repeats: int = 20, timeout: float = 300.0, log=print) -> dict:
    """Run ``runner.advise.allreduce`` under torchrun on the configured ranks (one node)."""
    la = cfg.launcher
    if str(la.nnodes) != "1":
        raise ConfigError(f"echo-advise measure times the all-reduce on one node, and launcher.nnodes={la.nnodes}: "
                          "measure with launcher.nnodes=1 (the ranks of one node), and give the network's "
                          "hardware.comm_latency_s and hardware.comm_bandwidth_Bps yourself for several nodes.")
    from omegaconf import OmegaConf

    log(f"measure: all-reduce of {nbytes:,} bytes (the model's parameters) on {la.nproc_per_node} ranks ...")
    with tempfile.TemporaryDirectory(prefix="echo-advise-") as tmp:
        conf, out = Path(tmp) / "config.yaml", Path(tmp) / "allreduce.json"
        OmegaConf.save(cfg, conf, resolve=True)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={la.nproc_per_node}",
               "-m", "runner.advise.allreduce", str(conf), "--bytes", str(nbytes), "--repeats", str(repeats),
               "--out", str(out)]
        env = dict(os.environ)
        env.setdefault("OMP_NUM_THREADS", str(cfg.train.threads or 1))
        try:
            res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ConfigError(f"timing the all-reduce on {la.nproc_per_node} ranks did not finish within {timeout:.0f} s: "
                              "the ranks could not meet (a firewall, a busy port). Check that `echo-run "
                              "launcher=torchrun` runs on this machine.") from None
        if res.returncode != 0 or not out.exists():
            tail = " ".join((res.stderr or res.stdout).split()[-60:])
            raise ConfigError(f"timing the all-reduce under torchrun failed (exit status {res.returncode}): {tail}. "
                              "Check that `echo-run launcher=torchrun <the same overrides>` starts.")
        r = json.loads(out.read_text())
    big, tiny = quartiles(r["big_s"]), quartiles(r["tiny_s"])
    payload_s = max(big["median"] - tiny["median"], 1e-9)
    return {"bytes": nbytes, "world": r["world"], "backend": r["backend"], "big_s": big, "tiny_s": tiny,
            "latency_s": tiny["median"], "bandwidth_Bps": nbytes / payload_s}


# ------------------------------------------------------------------------------------ the profile
def machine(device: str) -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:  # the model name is more telling than "x86_64"
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name() if device.startswith("cuda") and torch.cuda.is_available() else None
    return {"host": socket.gethostname(), "platform": platform.platform(), "cpu": cpu, "cpus": os.cpu_count(),
            "gpu": gpu, "torch": str(torch.__version__), "python": platform.python_version(),
            "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None}


def ratio(m: dict, B: int) -> dict:
    """R with its spread, from the quartiles of the throughput and of the step time."""
    e, s = m["pipeline"]["examples_per_s"], m["step_s"]
    load = lambda rate: B / rate  # noqa: E731
    return {"value": load(e["median"]) / s["median"], "lo": load(e["q3"]) / s["q3"], "hi": load(e["q1"]) / s["q1"]}


def to_profile(cfg, m: dict, name: str, overrides: List[str], comm: Optional[dict] = None) -> dict:
    """The hardware node: the simulated clock's numbers, and ``info`` for the reader."""
    from ..config import resolved

    d = cfg.data
    W = int(d.workers)
    rate = m["pipeline"]["examples_per_s"]["median"]
    res = resolved(cfg)
    R = ratio(m, d.batch_size)
    info = {
        "machine": machine(m["device"]),
        "date": datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds"),
        "command": "echo-advise measure " + " ".join(overrides),
        "overrides": list(overrides),
        "workload": prof.describe(res),
        "workload_hash": prof.workload_hash(res),
        "task": m["task"],
        "R": R,
        "batch_load_s": d.batch_size / rate,
        "pipeline": {k: v for k, v in m["pipeline"].items()},
        "step_s": m["step_s"],
        "step_alone_s": m["step_alone_s"],
        "loop_fresh_batches_per_s": m["loop"]["fresh_per_s"] if m["loop"] else None,
        "device": m["device"],
        "eval_s": m["eval_s"],
        "loaded_during_eval": m["loaded_during_eval"],
        "param_bytes": m["param_bytes"],
        "synchronous": m["synchronous"],
        "allreduce": comm,
    }
    return {
        "name": name,
        # Per worker, so that batch_size * load_s_per_example / workers is the measured batch load time.
        "load_s_per_example": max(W, 1) / rate,
        "workers": max(W, 1),
        "step_s": m["step_s"]["median"],
        "ratio": None,
        # What the real pipeline may hold ahead of the trainer: the feeder's queue and the workers' tasks.
        "prefetch": max(1, m["depth"]),
        "comm_latency_s": comm["latency_s"] if comm else 0.0,
        "comm_bandwidth_Bps": comm["bandwidth_Bps"] if comm else None,
        **clock_extras(m, d.batch_size / rate, cfg.pipeline.examples_per_s is None),
        "info": info,
    }


def clock_extras(m: dict, batch_load_s: float, loads_while_paused: bool) -> dict:
    """The simulated clock's start-up and pause terms, where this version of the clock has them
    (``hardware.start_s``: the pipeline's first batch comes that much later than one batch load time
    after it is started, its workers starting; ``hardware.pause_s``: seconds the pipeline goes on loading
    while the loop evaluates, 0 for a throttled pipeline, which pauses too). Without them the numbers
    stay in ``info`` (``pipeline.first_batch_s``, ``eval_s``)."""
    from dataclasses import fields

    from ..schema import HardwareConfig

    have = {f.name for f in fields(HardwareConfig)}
    out = {}
    if "start_s" in have:
        out["start_s"] = max(0.0, m["pipeline"]["first_batch_s"] - batch_load_s)
    if "pause_s" in have:
        ahead = m.get("loaded_during_eval")
        if not loads_while_paused or not ahead:
            out["pause_s"] = 0.0
        elif ahead["batches"] >= ahead["depth"]:
            out["pause_s"] = m["eval_s"]  # the buffers filled up: any longer pause gives the same
        else:  # it loaded only this much meanwhile (evaluation and loading shared the CPU), and for no
            # longer than the evaluation: a batch already in flight when a short one began also counts
            out["pause_s"] = min(m["eval_s"], ahead["batches"] * batch_load_s)
    return out


def fmt_R(info: dict) -> str:
    R, e, s = info["R"], info["pipeline"]["examples_per_s"], info["step_s"]
    a = info.get("step_alone_s") or s
    ms = lambda q: f"{q['median'] * 1e3:.3g} ms (quartiles {q['q1'] * 1e3:.3g}-{q['q3'] * 1e3:.3g})"  # noqa: E731
    step = (f"a step takes {ms(s)} beside the running pipeline over {s['n']} windows, {ms(a)} alone over "
            f"{a['n']} steps" if a is not s else f"a step takes {ms(s)} over {s['n']} steps")
    return (f"R = {R['value']:.3g} (range {R['lo']:.3g}-{R['hi']:.3g} from the quartiles): a batch loads in "
            f"{info['batch_load_s'] * 1e3:.3g} ms ({e['median']:.4g} examples/s, quartiles {e['q1']:.4g}-{e['q3']:.4g} "
            f"over {e['n']} windows), {step}")


def measure(cfg, overrides: List[str], name: str = prof.DEFAULT_NAME, directory: Optional[str] = None,
            windows: int = 5, window_s: float = 0.5, steps: int = 20, log=print) -> tuple:
    """Measure, write the profile; returns (profile, path)."""
    t0 = time.perf_counter()
    m = measure_workload(cfg, windows=windows, window_s=window_s, steps=steps, log=log)
    comm = time_allreduce(cfg, m["param_bytes"], log=log) if cfg.launcher.name == "torchrun" else None
    p = to_profile(cfg, m, name, overrides, comm)
    path = prof.write(p, name, directory)
    info = p["info"]
    log(f"measure: {info['workload']}")
    log(f"measure: {fmt_R(info)}")
    if comm:
        log(f"measure: all-reduce on {comm['world']} ranks ({comm['backend']}): {comm['big_s']['median'] * 1e3:.3g} ms "
            f"for {comm['bytes']:,} bytes, {comm['tiny_s']['median'] * 1e6:.3g} us for one number "
            f"(latency); bandwidth {comm['bandwidth_Bps'] / 1e6:.4g} MB/s")
    if m["synchronous"]:
        log("measure: note: this pipeline loads in the training thread (data.workers=0, no background), so "
            "loading does not overlap with compute as the simulated clock assumes; give data.workers=1 or more "
            "for a faithful clock.")
    log(f"measure: first batch {info['pipeline']['first_batch_s'] * 1e3:.3g} ms after the start (worker "
        f"start-up), one evaluation {m['eval_s']:.3g} s; measured in {time.perf_counter() - t0:.1f} s")
    sel = " ".join(prof.searchpath(directory) + [f"hardware={name}"])
    log(f"measure: wrote the profile {path}; select it with {sel}")
    return p, path
