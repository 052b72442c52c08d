"""`make bench`, part 1: two ratios measured side by side in one process, written to
results/bench/bench.json and printed as a table (part 2, wall-clock time to target on a slowed
pipeline, is scripts/bench_wallclock.py; the pipeline against a plain DataLoader is
scripts/bench_pipeline.py).

1. runner overhead: steps/s of echo-run's training loop (plain SGD, schedule=none) over steps/s of a
   bare hand-written PyTorch loop, same model, same in-memory digits, same threads (goal >= 0.99).
   On a shared machine single pairs of this ratio spread by +-5%, more than the runner costs; so
   beside it (1b) the runner's own cost per step: echo-run's time per step less the bare loop's on
   a tiny model and batch, where that cost is a large share of the step, and the ratio it implies
   on the default workload's bare step;
2. echo step over plain step: an echo step (EchoStream's decision + the step on the batch it holds)
   against a plain step on the same batch already on the device (goal <= 1.01); beside it, the
   decision alone (EchoStream.next() without a step, in microseconds) and the ratio it implies;
3. the data-parallel baseline: steps/s of echo-run's ``comm=allreduce`` over steps/s of a plain DDP
   loop (DistributedDataParallel with its defaults, each rank on its shard of a shared permutation),
   same model and data, 2 gloo ranks on this machine, side by side in the same two processes
   (goal >= 0.97), each side's time the slower rank's. By default on each rank's process CPU time
   (``--ddp-clock process``: all its threads, gloo's communication threads included), which other
   jobs on a shared machine leave alone; ``--ddp-clock wall`` counts a rank's waits too (on a loaded
   2-core machine single pairs then spread by +-30%).

Both alternate the two sides and take the median over repeats (quartiles of the pairs' ratios as
the spread), and by default time both sides with the CPU time of the training thread (``--clock
cpu``: torch runs single-threaded here, so that thread does all the work), because on a shared
machine other processes make wall time vary by tens of percent between identical runs; ``--clock
wall`` uses the wall clock. Usage:
python scripts/bench.py [--steps N] [--repeats K] [--clock cpu|wall] [--ddp-repeats K] [--ddp-clock process|wall]
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F

from runner import config, data, echo, models, parts, schedules, summary, train
from runner.comm import Local

ROOT = Path(__file__).resolve().parent.parent

BASE = ("logger.progress=false", "checkpoint.enabled=false", "train.threads=1")
TINY = ("model.width=1", "data.batch_size=4")  # a step of about 0.3 ms: the runner's own cost shows
CLOCK = {"cpu": time.thread_time, "wall": time.perf_counter, "process": time.process_time}
now = time.perf_counter


@contextmanager
def loop_clock(name: str):
    """Time ratios 1 and 2 (both sides, echo-run's own wall_s too) with the chosen clock."""
    global now
    now = CLOCK[name]
    try:
        yield
    finally:
        now = time.perf_counter


def compose(*overrides: str):
    return config.compose([*BASE, *overrides])


def run(*overrides: str) -> list:
    """echo-run's training loop in this process, its training clock the bench's; returns its records."""
    from runner.metrics import read_jsonl

    with tempfile.TemporaryDirectory() as d:
        t = train.Trainer(compose(*overrides), Path(d), clock=now)
        with t.session():
            status = t.train()
        t.finish(status)
        return read_jsonl(Path(d) / "metrics.jsonl")


def runner_steps_per_s(steps: int, *overrides: str) -> float:
    # Evaluation only before the first step and after the last; wall_s excludes both.
    last = run("schedule=none", f"budget.steps={steps}", "eval.every_loads=null", *overrides)[-1]
    return last["step"] / last["wall_s"]


def bare_steps_per_s(steps: int, *overrides: str, seed: int = 0) -> float:
    """What a user would write by hand: shuffled in-memory batches, forward, backward, SGD step."""
    cfg = compose(*overrides)
    splits = data.build(cfg.data)
    torch.manual_seed(seed)
    model = models.build(cfg.model, splits.info)
    o = cfg.optim
    opt = torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    X, Y = splits.train.tensors
    B, n = cfg.data.batch_size, len(Y)
    g = torch.Generator().manual_seed(seed)
    t0 = now()
    for i in range(steps):
        j = i % (n // B)
        if j == 0:
            perm = torch.randperm(n, generator=g)
        idx = perm[j * B:(j + 1) * B]
        loss = F.cross_entropy(model(X[idx]), Y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    loss.item()
    return steps / (now() - t0)


def alternate(repeats: int, steps: int, *overrides: str) -> list:
    """(echo-run, bare loop) steps/s pairs, the side that goes first alternating."""
    pairs = []
    for k in range(repeats):
        sides = (runner_steps_per_s, bare_steps_per_s)[:: 1 if k % 2 == 0 else -1]
        x, y = (f(steps, *overrides) for f in sides)
        pairs.append((x, y) if k % 2 == 0 else (y, x))
        print(f"  echo-run {pairs[-1][0]:.1f} steps/s, bare loop {pairs[-1][1]:.1f} steps/s", flush=True)
    return pairs


def echo_vs_plain(steps: int, blocks: int) -> tuple:
    """Seconds per step: echo steps from an EchoStream that never loads after its first step, and
    plain steps on the same device batch; alternating blocks, medians."""
    cfg = compose()
    dev = torch.device("cpu")
    splits = data.build(cfg.data)
    torch.manual_seed(0)
    model = parts.model(cfg, splits.info, dev)  # the run's own parts, as the trainer builds them
    opt = parts.optimizer(cfg, model)
    amp, scaler = parts.precision(cfg.train, dev)
    batch = [t[: cfg.data.batch_size] for t in splits.train.tensors]
    comm = Local(model)
    stream = echo.EchoStream(itertools.repeat(batch), policy="stochastic", schedule=schedules.constant(0.0))
    stream.next(0.0)  # the one load
    step = lambda b: train.train_step(model, opt, scaler, b, comm, amp, cfg.optim.grad_clip)
    e_times, p_times = [], []
    for k in range(blocks):
        for side in ((0, 1) if k % 2 == 0 else (1, 0)):
            t0 = now()
            if side == 0:
                for i in range(steps):
                    s = stream.next(i / steps)
                    step(s.batch)
            else:
                for i in range(steps):
                    step(batch)
            (e_times if side == 0 else p_times).append((now() - t0) / steps)
    return statistics.median(e_times), statistics.median(p_times), [e / p for e, p in zip(e_times, p_times)]


def echo_decision_s(calls: int = 20000, repeats: int = 5) -> float:
    """Seconds per EchoStream.next() alone (the decision and handing over the held batch, no step):
    what an echo step adds to a plain one. The median over repeats of ``calls`` calls."""
    batch = [torch.zeros(1)]
    times = []
    for _ in range(repeats):
        stream = echo.EchoStream(itertools.repeat(batch), policy="stochastic", schedule=schedules.constant(0.0))
        stream.next(0.0)
        t0 = now()
        for i in range(calls):
            stream.next(i / calls)
        times.append((now() - t0) / calls)
    return statistics.median(times)


DDP_RUN = ("launcher=torchrun", "launcher.nproc_per_node=2", "comm=allreduce")


def plain_ddp_steps_per_s(steps: int, *overrides: str, seed: int = 0) -> float:
    """A plain DDP loop as its tutorial writes it: the model wrapped by DistributedDataParallel with
    its defaults, each rank stepping on its shard of a permutation shared by the ranks; the slower
    rank's time."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    cfg = compose(*overrides)
    splits = data.build(cfg.data)
    torch.manual_seed(seed)
    model = models.build(cfg.model, splits.info)
    net = DDP(model)
    o = cfg.optim
    opt = torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    X, Y = splits.train.tensors
    rank, world = dist.get_rank(), dist.get_world_size()
    B, n = cfg.data.batch_size, len(Y) // world
    g = torch.Generator().manual_seed(seed)
    dist.barrier()
    t0 = now()
    for i in range(steps):
        j = i % (n // B)
        if j == 0:
            perm = torch.randperm(len(Y), generator=g)[rank::world]
        idx = perm[j * B:(j + 1) * B]
        loss = F.cross_entropy(net(X[idx]), Y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    loss.item()
    took = torch.tensor([now() - t0], dtype=torch.float64)
    dist.all_reduce(took, op=dist.ReduceOp.MAX)
    return steps / took.item()


def runner_ddp_steps_per_s(steps: int, *overrides: str) -> float:
    """echo-run's loop as one rank of the job (only rank 0 writes records): its steps over its
    training clock, the slower rank's, as its records' wall_s."""
    import torch.distributed as dist

    with tempfile.TemporaryDirectory() as d:
        t = train.Trainer(compose("schedule=none", f"budget.steps={steps}", "eval.every_loads=null", *overrides),
                          Path(d), clock=now)
        with t.session():
            t.train()
        took = torch.tensor([t.c.wall_s], dtype=torch.float64)
    dist.all_reduce(took, op=dist.ReduceOp.MAX)
    return t.c.step / took.item()


def _ddp_rank(rank: int, port: int, steps: int, repeats: int, out: str, clock: str) -> None:
    """One of the 2 ranks: (echo-run comm=allreduce, plain DDP) steps/s pairs, alternating."""
    import torch.distributed as dist

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    with loop_clock(clock):
        runner_ddp_steps_per_s(10, *DDP_RUN)  # the process group, first-call allocations, lazy imports
        plain_ddp_steps_per_s(10, *DDP_RUN)
        pairs = []
        for k in range(repeats):
            sides = (runner_ddp_steps_per_s, plain_ddp_steps_per_s)[:: 1 if k % 2 == 0 else -1]
            x, y = (f(steps, *DDP_RUN) for f in sides)
            pairs.append((x, y) if k % 2 == 0 else (y, x))
            if rank == 0:
                print(f"  comm=allreduce {pairs[-1][0]:.1f} steps/s, plain DDP {pairs[-1][1]:.1f} steps/s", flush=True)
    if rank == 0:
        Path(out).write_text(json.dumps(pairs))
    dist.destroy_process_group()


def ddp_vs_plain(steps: int, repeats: int, clock: str = "wall") -> dict:
    """Ratio 3: echo-run's comm=allreduce over a plain DDP loop, 2 gloo ranks spawned here."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as d:
        out = str(Path(d) / "pairs.json")
        mp.spawn(_ddp_rank, args=(port, steps, repeats, out, clock), nprocs=2, join=True)
        pairs = json.loads(Path(out).read_text())
    ratios = [r / b for r, b in pairs]
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    return {"ratio": statistics.median(ratios), "quartiles": [q[0], q[2]], "goal": ">= 0.97", "clock": clock,
            "ranks": 2, "backend": "gloo", "steps": steps, "pairs_steps_per_s": pairs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200, help="training steps per overhead measurement")
    ap.add_argument("--repeats", type=int, default=11, help="alternating repeats of ratios 1 and 2")
    ap.add_argument("--clock", choices=sorted(CLOCK), default="cpu", help="the clock of ratios 1 and 2")
    ap.add_argument("--ddp-repeats", type=int, default=7, help="alternating repeats of ratio 3 (2 gloo ranks)")
    ap.add_argument("--ddp-clock", choices=("process", "wall"), default="process", help="the clock of ratio 3")
    ap.add_argument("--out", default=str(ROOT / "results" / "bench"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    print(f"1. runner overhead (alternating runs, {a.clock} time)...", flush=True)
    with loop_clock(a.clock):
        bare_steps_per_s(20), runner_steps_per_s(20)  # warm-up: first-call allocations, lazy imports
        pairs = alternate(a.repeats, a.steps)
        print(f"1b. the runner's own cost per step, on a step too small to hide it ({' '.join(TINY)})...",
              flush=True)
        tiny = alternate(a.repeats, 5 * a.steps, *TINY)
        print("2. echo step vs plain step...", flush=True)
        e, p, pair_ratios = echo_vs_plain(a.steps // 4, 2 * a.repeats)
        qe = statistics.quantiles(pair_ratios, n=4)
        decision = echo_decision_s()
    print(f"3. comm=allreduce vs plain DDP (2 gloo ranks, {a.ddp_clock} time)...", flush=True)
    ddp = ddp_vs_plain(a.steps, a.ddp_repeats, a.ddp_clock)
    overhead = statistics.median(r / b for r, b in pairs)
    q = statistics.quantiles([r / b for r, b in pairs], n=4)  # the spread between repeats
    # The runner's fixed cost: per-step time of echo-run less the bare loop's, on the tiny step where
    # it is a large share; added to the default workload's bare step it gives the ratio it implies.
    extra = [1 / r - 1 / b for r, b in tiny]
    qx = statistics.quantiles(extra, n=4)
    bare_s = statistics.median(1 / b for _, b in pairs)
    implied = lambda x: bare_s / (bare_s + x)
    res = {
        "runner_overhead": {"ratio": overhead, "quartiles": [q[0], q[2]], "goal": ">= 0.99", "clock": a.clock,
                            "steps": a.steps, "pairs_steps_per_s": pairs},
        "runner_cost_per_step": {"us": 1e6 * statistics.median(extra), "quartiles_us": [1e6 * qx[0], 1e6 * qx[2]],
                                 "workload": list(TINY), "steps": 5 * a.steps, "pairs_steps_per_s": tiny,
                                 "bare_step_s_default_workload": bare_s,
                                 "implied_ratio": implied(statistics.median(extra)),
                                 "implied_ratio_quartiles": [implied(qx[2]), implied(qx[0])]},
        "allreduce_vs_ddp": ddp,
        "echo_decision": {"us": 1e6 * decision, "implied_ratio": (p + decision) / p, "goal": "<= 1.01"},
        "echo_step_cost": {"ratio": e / p, "quartiles": [qe[0], qe[2]], "goal": "<= 1.01", "clock": a.clock,
                           "echo_s_per_step": e, "plain_s_per_step": p},
        "machine": {"cpus": os.cpu_count(), "threads": torch.get_num_threads(), "load_avg": os.getloadavg(),
                    "git_revision": summary.git_revision(), **summary.versions(), "platform": platform.platform()},
        "command": "make bench  # python scripts/bench.py " + " ".join(sys.argv[1:]),
    }
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(res, indent=2) + "\n")
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"
    rows = [(f"runner overhead: echo-run / bare loop steps/s (quartiles {q[0]:.3f}-{q[2]:.3f})", fmt(overhead),
             ">= 0.99", overhead >= 0.99),
            (f"runner overhead implied by its own cost per step, {1e6 * statistics.median(extra):.0f} µs "
             f"(quartiles {1e6 * qx[0]:.0f}-{1e6 * qx[2]:.0f}), on the bare step of {1e3 * bare_s:.2f} ms",
             fmt(implied(statistics.median(extra))), ">= 0.99", implied(statistics.median(extra)) >= 0.99),
            (f"echo step / plain step (data on device; quartiles {qe[0]:.3f}-{qe[2]:.3f})", fmt(e / p), "<= 1.01",
             e / p <= 1.01),
            (f"comm=allreduce / plain DDP steps/s, 2 gloo ranks (quartiles {ddp['quartiles'][0]:.3f}-"
             f"{ddp['quartiles'][1]:.3f})", fmt(ddp["ratio"]), ">= 0.97", ddp["ratio"] >= 0.97),
            (f"echo step implied by the decision alone, EchoStream.next(): {1e6 * decision:.1f} µs "
             f"on a plain step of {1e3 * p:.2f} ms", fmt((p + decision) / p), "<= 1.01", (p + decision) / p <= 1.01)]
    print("\n| measure | ratio | goal | met |\n|---|---|---|---|")
    for m, v, g, ok in rows:
        print(f"| {m} | {v} | {g} | {'yes' if ok else 'no'} |")
    print(f"\nwritten to {out / 'bench.json'}")


if __name__ == "__main__":
    main()
