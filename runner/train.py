"""The training loop: config -> data -> pipeline -> echo stage -> train step -> communication ->
records. One function runs alone or as one rank of a torchrun job; every piece of state it needs
to continue exactly is in the checkpoint."""
from __future__ import annotations

import math
import signal
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from . import accel, checkpoint, comm as comm_mod, data, dist, echo, models, pipeline, simclock
from .metrics import Progress, build_sinks, clean, write_json
from .schema import ConfigError
from .schedules import lr_at
from .summary import config_hash, make_summary


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


class Preempted(RuntimeError):
    """SIGTERM or SIGINT arrived; a checkpoint was written."""


@dataclass
class Counters:
    step: int = 0
    example_loads: int = 0  # all ranks together
    echo_steps: int = 0
    records: int = 0
    wall_s: float = 0.0  # training time only
    eval_s: float = 0.0
    next_eval: int = 0  # example loads at which the next evaluation is due
    next_ckpt: int = 0
    loss_sum: float = 0.0  # training loss since the last record
    loss_n: int = 0
    recorded_step: int = -1  # the step of the last record


def plain(node) -> SimpleNamespace:
    """A config group as a plain object, for reads in the hot loop."""
    return SimpleNamespace(**OmegaConf.to_container(node, resolve=True))


def progress(c: Counters, b, sim_s: Optional[float]) -> float:
    """u: the largest fraction of any budget consumed."""
    u = 0.0
    if b.example_loads:
        u = c.example_loads / b.example_loads
    if b.steps:
        u = max(u, c.step / b.steps)
    if b.sim_s and sim_s is not None:
        u = max(u, sim_s / b.sim_s)
    return u


def loss_fn(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))


@torch.no_grad()
def evaluate(model, test, task: str, device, batch_size: int, amp) -> dict:
    model.eval()
    fetch = pipeline.fetcher(test)
    total, correct, n = 0.0, 0, 0
    for i in range(0, len(test), batch_size):
        x, y = (t.to(device, non_blocking=True) for t in fetch(list(range(i, min(i + batch_size, len(test))))))
        with amp():
            logits = model(x).float()
        total += F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), reduction="sum").item()
        n += y.numel()
        if task == "classification":
            correct += (logits.argmax(-1) == y).sum().item()
    model.train()
    loss = total / n
    if task == "classification":
        return {"test_loss": loss, "test_acc": correct / n}
    return {"test_loss": loss, "test_ppl": math.exp(min(loss, 50.0))}


def amp_context(t, device: torch.device):
    mode = t.amp
    if mode == "auto":
        mode = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "off"
    if mode == "off":
        return nullcontext
    dtype = torch.bfloat16 if mode == "bf16" else torch.float16
    return lambda: torch.autocast(device.type, dtype=dtype)


def run(cfg: DictConfig, run_dir: Path) -> dict:
    """Train as configured, writing records to ``run_dir``; returns the summary."""
    run_dir = Path(run_dir)
    ctx = dist.init(cfg.train.device, cfg.launcher.backend)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    torch.manual_seed(cfg.seed)  # the same initial model on every rank
    splits = data.build(cfg.data)
    model = accel.prepare(models.build(cfg.model, splits.info).to(ctx.device), cfg.train, ctx.device, splits.info)
    comm = comm_mod.build(cfg, model, ctx)
    net = accel.compile_net(comm.wrap(model), cfg.train)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.optim.lr, momentum=cfg.optim.momentum,
                          weight_decay=cfg.optim.weight_decay, nesterov=cfg.optim.nesterov)
    B = cfg.data.batch_size
    source = pipeline.from_config(cfg.pipeline, splits.train, B, cfg.seed, ctx.rank, ctx.world)
    clock = simclock.from_config(cfg.hardware, B)
    dev = ctx.device
    transfer = accel.transfer(dev, accel.uses_channels_last(cfg.train, dev, splits.info))
    stream = echo.from_config(cfg, source, ready=clock.ready if clock else source.ready, agree=comm.agree,
                              transfer=transfer, on_echo=splits.augment if cfg.data.augment_on_echo else None)
    amp = amp_context(cfg.train, dev)
    torch.manual_seed(cfg.seed + 7919 * (ctx.rank + 1))  # per-rank stream for dropout and the like

    c = Counters(next_eval=0, next_ckpt=cfg.checkpoint.every_loads or 0)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    chash = config_hash(resolved)
    state = checkpoint.load_agreed(run_dir, ctx.rank, comm.reduce_max if ctx.world > 1 else None)
    if state is not None:
        if state["config_hash"] != chash:
            raise ConfigError(f"the checkpoint {checkpoint.path(run_dir, ctx.rank)} belongs to another "
                              "configuration; it is left untouched. Re-run that run's exact command to continue "
                              "it, or choose another directory with hydra.run.dir=...")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        stream.load_state_dict(state["stream"])
        source.load_state_dict(state["source"])
        comm.load_state_dict(state["comm"])
        if clock:
            clock.load_state_dict(state["clock"])
        torch.set_rng_state(state["rng"])
        if dev.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], dev)
        c = Counters(**state["counters"])
    # The training loss since the last record, summed on the device (one sync per record). A
    # checkpoint stores its exact value, so a resumed run sums in the same order as an unbroken one.
    loss_acc = torch.full((), c.loss_sum, device=dev)
    n_acc = c.loss_n

    def save_checkpoint() -> None:
        c.loss_sum, c.loss_n = loss_acc.item(), n_acc
        checkpoint.save(run_dir, ctx.rank, {
            "config_hash": chash, "model": model.state_dict(), "opt": opt.state_dict(),
            "stream": stream.state_dict(), "source": source.state_dict(), "comm": comm.state_dict(),
            "clock": clock.state_dict() if clock else None, "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None,
            "counters": asdict(c)})

    sinks = build_sinks(cfg, run_dir, resolved) if ctx.is_main else []
    for s in sinks:
        if hasattr(s, "index"):
            s.index = c.records  # records already written before the checkpoint are not repeated
    # Plain copies of what the loop reads at every step: an OmegaConf attribute read costs ~100x a
    # plain one, which added up to several percent of a small model's step.
    b, optim = plain(cfg.budget), plain(cfg.optim)
    every_eval, every_ckpt = cfg.eval.every_loads, cfg.checkpoint.every_loads
    total, unit = ((b.example_loads, "loads") if b.example_loads else (b.steps, "steps") if b.steps else (b.sim_s, "sim_s"))
    bar = Progress(total, unit, cfg.logger.progress and ctx.is_main)
    stop = {"signal": None}

    def on_signal(signum, frame):
        stop["signal"] = signum

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    last_p = 1.0

    def record(u: float) -> dict:
        nonlocal last_p, n_acc
        c.loss_sum, c.loss_n = loss_acc.item(), n_acc
        loss_acc.zero_()
        n_acc = 0
        if dev.type == "cuda":
            torch.cuda.synchronize()
        wall, idle = comm.reduce_max([c.wall_s, source.idle_s])
        t0 = time.perf_counter()
        rec = {"step": c.step, "example_loads": c.example_loads, "epoch": c.example_loads / len(splits.train),
               "echo_steps": c.echo_steps, "wall_s": wall, "eval_s": c.eval_s,
               "sim_s": clock.t if clock else None, "idle_s": clock.idle_s if clock else idle,
               "real_idle_s": idle, "lr": lr_at(cfg.optim, min(u, 1.0)), "p_load": last_p,
               "train_loss": c.loss_sum / c.loss_n if c.loss_n else None,
               "comm_rounds": comm.rounds, "comm_bytes": comm.bytes, "sync_rounds": comm.sync_rounds,
               "world_size": ctx.world}
        if ctx.is_main:
            rec.update(evaluate(model, splits.test, splits.task, dev, cfg.eval.batch_size, amp))
        c.eval_s += time.perf_counter() - t0
        rec["eval_s"] = c.eval_s
        c.records += 1
        c.recorded_step = c.step
        c.loss_sum, c.loss_n = 0.0, 0
        for s in sinks:
            s.write(clean(rec))
        return rec

    status = "complete"
    try:
        if c.records == 0:
            record(0.0)
            c.next_eval = cfg.eval.every_loads or 0
        t_start = time.perf_counter()
        metric = splits.task == "classification" and "test_acc" or "test_ppl"
        u = progress(c, b, clock.t if clock else None)
        while u < 1.0:
            s = stream.next(u)
            last_p = s.p
            if clock:
                for _ in range(s.loaded // B):
                    clock.load()
            lr = lr_at(optim, u)
            for g in opt.param_groups:
                g["lr"] = lr
            loss_acc += train_step(net, opt, s.batch, comm, amp, optim.grad_clip)
            n_acc += 1
            nbytes = comm.after_step(s.fresh, u)
            if clock:
                clock.step()
                if nbytes:
                    clock.comm(nbytes)
            c.step += 1
            c.example_loads += s.loaded * ctx.world
            c.echo_steps += not s.fresh
            eval_due = bool(every_eval) and c.example_loads >= c.next_eval
            ckpt_due = bool(every_ckpt) and c.example_loads >= c.next_ckpt
            alone_stopped = stop["signal"] is not None and ctx.world == 1
            u_now, u = u, progress(c, b, clock.t if clock else None)  # u_now: this step's, for its record
            if eval_due or ckpt_due or alone_stopped or u >= 1.0:
                c.wall_s += time.perf_counter() - t_start
                source.pause()  # not training time: the pipeline must not load ahead meanwhile
                # One verdict for all ranks, which reach this point at the same steps: a signal or a
                # NaN on any rank stops every rank here, so their checkpoints are of the same step.
                stopping, bad = comm.reduce_max([float(stop["signal"] is not None),
                                                 float(not math.isfinite(loss_acc.item()))])
                if bad:
                    rec = record(u_now)
                    raise Diverged(f"the training loss became {rec['train_loss']} by step {c.step}")
                if eval_due:
                    while c.next_eval <= c.example_loads:
                        c.next_eval += cfg.eval.every_loads
                    rec = record(u_now)
                    bar.update(c.example_loads if unit == "loads" else c.step, step=c.step, p=s.p,
                               **{metric: rec.get(metric)})
                if cfg.checkpoint.enabled and (ckpt_due or (eval_due and not cfg.checkpoint.every_loads)
                                               or stopping):
                    while cfg.checkpoint.every_loads and c.next_ckpt <= c.example_loads:
                        c.next_ckpt += cfg.checkpoint.every_loads
                    save_checkpoint()
                if stopping:
                    raise Preempted(f"stopped by signal {stop['signal'] or 'on another rank'} at step {c.step}; a "
                                    "checkpoint was written: run the same command again to continue")
                source.resume()
                t_start = time.perf_counter()
            elif c.step % 25 == 0:
                bar.update(c.example_loads if unit == "loads" else c.step, step=c.step, p=s.p)
        if c.recorded_step != c.step:
            final = record(1.0)
            bar.update(c.example_loads if unit == "loads" else c.step, step=c.step, **{metric: final.get(metric)})
            if cfg.checkpoint.enabled:
                save_checkpoint()
    except Diverged:
        status = "diverged"
    finally:
        bar.close()
        source.close()  # stop a background producer
        for sig, h in old.items():
            signal.signal(sig, h)
    write_json(run_dir / f"rank{ctx.rank}.json", comm.report())  # decision hash, checksums, counts
    summary = make_summary(cfg, resolved, run_dir, status, chash, ctx.world)
    if ctx.is_main:
        write_json(run_dir / "summary.json", summary)
    for s in sinks:
        s.close()
    return summary


def train_step(net, opt, batch, comm, amp, grad_clip) -> torch.Tensor:
    """One forward/backward; the optimizer steps unless gradients are still being accumulated."""
    x, y = batch
    with comm.backward_context():
        with amp():
            loss = loss_fn(net(x), y)
        loss.backward()
    if comm.should_step():
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return loss.detach().float()
