"""The training loop: config -> data -> pipeline -> echo stage -> train step -> communication ->
records. ``run`` trains alone or as one rank of a torchrun job. ``Trainer`` builds the run's parts
once and names, in one place, everything a checkpoint holds to continue exactly; ``train`` is the
loop and ``boundary`` the work between steps (agree on a stop, evaluate, record, checkpoint)."""
from __future__ import annotations

import math
import signal
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Iterator, Optional

import torch
from omegaconf import DictConfig, OmegaConf

from . import accel, checkpoint, comm as comm_mod, data, dist, echo, parts, seeds, simclock
from .config import build, config_hash, resolved
from .errors import ConfigError, Diverged, Preempted
from .launch import requeue, scheduler_signal
from .metrics import Progress, build_sinks, clean, write_json
from .records import write_final_examples
from .schedules import example_position, lr_at, lr_position
from .schema import METRICS, ScheduleKeys
from .step import evaluate, train_step
from .summary import make_summary, reached


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
    recorded_step: int = -1  # the step of the last record
    recorded_full: bool = False  # the last record evaluated the whole test set (not eval.subset's)
    saved_step: int = -1  # the step of the last checkpoint
    at_target: bool = False  # target.stop: a record reached the target, and the run ends there
    load_start: int = 0  # example loads before the latest load (the learning rate's position)
    since_load: int = 0  # steps since the latest load


class Budget:
    """The run's budget and u, the largest fraction of it consumed. A budget of example loads ends
    at the step that would load beyond it: the upstream ends after the last whole batch that fits."""

    def __init__(self, b, loads_per_batch: int):
        self.batches = b.example_loads // loads_per_batch if b.example_loads else None
        if self.batches == 0:
            raise ConfigError(f"budget.example_loads={b.example_loads} is less than one batch of every rank "
                              f"({loads_per_batch} examples): raise it or lower data.batch_size.")
        self.loads = self.batches * loads_per_batch if self.batches else None
        self.steps, self.sim_s = b.steps, b.sim_s

    def fraction(self, c: Counters, sim_s: Optional[float], loads: Optional[float] = None) -> float:
        """``loads``: the example loads to count instead of ``c.example_loads`` (the lr's position)."""
        u = (c.example_loads if loads is None else loads) / self.loads if self.loads else 0.0
        if self.steps:
            u = max(u, c.step / self.steps)
        if self.sim_s and sim_s is not None:
            u = max(u, sim_s / self.sim_s)
        return min(u, 1.0)

    def spent(self, c: Counters, sim_s: Optional[float]) -> bool:
        return bool(self.steps and c.step >= self.steps) or bool(self.sim_s and sim_s is not None
                                                                   and sim_s >= self.sim_s)


class Limited:
    """The pipeline, ending after ``left`` batches (None: endless)."""

    def __init__(self, source, left: Optional[int]):
        self.source, self.left = source, left

    def __iter__(self) -> Iterator:
        return self

    def __next__(self):
        if self.left is not None:
            if self.left <= 0:
                raise StopIteration
            self.left -= 1
        return next(self.source)


class LossMeter:
    """The training loss since the last record, summed on the device (one host sync per check). A
    checkpoint stores the exact sum, so a resumed run sums in the same order as an unbroken one."""

    def __init__(self, dev: torch.device):
        self.sum, self.n = torch.zeros((), device=dev), 0

    def add(self, loss: torch.Tensor) -> None:
        self.sum += loss
        self.n += 1

    def finite(self) -> bool:
        return math.isfinite(self.sum.item())

    def take(self) -> Optional[float]:
        mean = self.sum.item() / self.n if self.n else None
        self.sum.zero_()
        self.n = 0
        return mean

    def state_dict(self) -> dict:
        return {"sum": self.sum.item(), "n": self.n}

    def load_state_dict(self, st: dict) -> None:
        self.sum.fill_(st["sum"])
        self.n = st["n"]


class Timer:
    """Training time. The device is synchronised before every read, so that work queued on a GPU
    lands in the interval that queued it (AlgoPerf's rule)."""

    def __init__(self, sync: Callable[[], None], clock: Callable[[], float] = time.perf_counter):
        self.sync, self.clock, self.t0 = sync, clock, 0.0

    def start(self) -> None:
        self.sync()
        self.t0 = self.clock()

    def stop(self) -> float:
        self.sync()
        return self.clock() - self.t0


class Trainer:
    final_examples = None  # the last record's per-example results (rank 0), written by finish()

    def __init__(self, cfg: DictConfig, run_dir: Path, clock: Callable[[], float] = time.perf_counter):
        """``clock``: the training clock's time source (a benchmark may count CPU time instead)."""
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.ctx = ctx = dist.init(cfg.train.device, cfg.launcher.backend)
        dev, B = ctx.device, cfg.data.batch_size
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        accel.deterministic(cfg.train.deterministic)
        torch.manual_seed(cfg.seed)  # the initial model (rank 0's is broadcast to every rank)
        self.splits = data.build(cfg.data)
        check_target(cfg.target, self.splits.task)
        # Records evaluate eval.subset's fixed examples (data.max_test_examples's selection: the same for
        # every run and seed), the last record the whole test set (final_examples.npz too).
        self.test_sets = {False: data.subset(self.splits.test, cfg.eval.subset), True: self.splits.test}
        self.stopped_at: Optional[float] = None  # the budget fraction a budget.stop_at run stopped at
        self.model = parts.model(cfg, self.splits.info, dev)
        if ctx.world > 1:
            comm_mod.broadcast_model(self.model)
        self.comm = comm_mod.build(cfg.comm, self.model, ctx, cfg.seed)
        self.net = accel.compile_net(self.comm.wrap(self.model), cfg.train)
        self.opt = parts.optimizer(cfg, self.model)
        self.amp, self.scaler = parts.precision(cfg.train, dev)
        self.budget = Budget(cfg.budget, B * ctx.world)
        self.source = parts.source(cfg, self.splits, dev, ctx.rank, ctx.world)
        self.upstream = Limited(self.source, self.budget.batches)
        self.clock = simclock.from_config(cfg.hardware, B)
        transfer = lambda b: [t.to(dev) for t in b]  # fresh batches arrive on the device; a restored one does not
        # Under the simulated clock "ready" is the same on every rank: no agreement round is needed.
        by_clock = self.clock is not None and cfg.echo.ready_from != "pipeline"
        self.stream = echo.from_config(
            cfg, self.upstream, build(cfg.schedule, ScheduleKeys), transfer=transfer,
            ready=self.clock.ready if by_clock else self.source.ready, agree=None if by_clock else self.comm.agree,
            on_echo=self.splits.augment if cfg.data.augment_on_echo else None)
        torch.manual_seed(seeds.rank_seed(cfg.seed, ctx.rank))  # per-rank stream for dropout and the like
        self.c = Counters(next_eval=cfg.eval.every_loads or 0, next_ckpt=cfg.checkpoint.every_loads or 0)
        self.loss, self.timer = LossMeter(dev), Timer(lambda: accel.sync(dev), clock)
        self.resolved = resolved(cfg)
        self.chash = config_hash(self.resolved)
        self.stop_signal: Optional[int] = None
        self.last_p = 1.0
        self.sinks: list = []
        # Plain copies of what the loop reads at every step: an OmegaConf attribute read costs ~100x a
        # plain one, which added up to several percent of a small model's step.
        self.optim = SimpleNamespace(**OmegaConf.to_container(cfg.optim, resolve=True))
        self.B, self.world = B, ctx.world
        self.every_eval, self.every_ckpt = cfg.eval.every_loads or 0, cfg.checkpoint.every_loads or 0
        self.check_every, self.checksums = cfg.train.check_every, cfg.comm.checksums
        total, unit = ((self.budget.loads, "loads") if self.budget.loads else (cfg.budget.steps, "steps")
                       if cfg.budget.steps else (cfg.budget.sim_s, "sim_s"))
        self.bar = Progress(total, unit, cfg.logger.progress and ctx.is_main)
        self.bar_unit = unit

    # -- what a checkpoint holds, named once
    def parts(self) -> dict:
        return {"model": self.model, "opt": self.opt, "scaler": self.scaler, "stream": self.stream,
                "source": self.source, "comm": self.comm, "clock": self.clock, "loss": self.loss}

    def state_dict(self) -> dict:
        dev = self.ctx.device
        return {"config_hash": self.chash, "counters": asdict(self.c), "rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None,
                **{k: p.state_dict() for k, p in self.parts().items() if p is not None}}

    def load_state_dict(self, st: dict) -> None:
        for k, p in self.parts().items():
            if p is not None:
                p.load_state_dict(st[k])
        torch.set_rng_state(st["rng"])
        if st["cuda_rng"] is not None:
            torch.cuda.set_rng_state(st["cuda_rng"], self.ctx.device)
        self.c = Counters(**st["counters"])
        if self.budget.batches is not None:
            self.upstream.left = self.budget.batches - self.c.example_loads // (self.B * self.world)

    def resume(self) -> None:
        """Continue from the newest checkpoint every rank holds, if there is one."""
        ctx = self.ctx
        st = checkpoint.load_agreed(self.run_dir, ctx.rank, self.comm.reduce_max if ctx.world > 1 else None)
        if st is None:
            return
        if st["config_hash"] != self.chash:
            raise ConfigError(f"the checkpoint {checkpoint.path(self.run_dir, ctx.rank)} belongs to another "
                              "configuration; it is left untouched. Re-run that run's exact command to continue "
                              "it, or choose another directory with hydra.run.dir=...")
        self.load_state_dict(st)

    # -- the loop
    def sim_s(self) -> Optional[float]:
        return self.clock.t if self.clock else None

    def train(self) -> str:
        """Train until the budget is spent (or budget.stop_at's evaluation); returns 'complete',
        'stopped' or 'diverged'."""
        c, b = self.c, self.budget
        self.source.ready()  # start loading now, as a DataLoader made before the loop would
        if c.records == 0:
            self.source.pause()  # as at every record: a throttled pipeline does not load ahead meanwhile
            self.record(0.0)
            self.source.resume()
            if self.clock:
                self.clock.pause()  # the pipeline, started above, loaded meanwhile (hardware.pause_s)
        u = b.fraction(c, self.sim_s())
        if self.cfg.budget.stop_at and u >= self.cfg.budget.stop_at and c.recorded_step == c.step:
            self.stopped_at = u  # stopped at this record before: nothing to train until stop_at is raised
            return "stopped"
        self.timer.start()
        try:
            while not (c.at_target or self.stopped_at is not None or b.spent(c, self.sim_s())):
                u = b.fraction(c, self.sim_s())
                try:
                    s = self.stream.next(u)
                except StopIteration:  # the next load would pass the budget of example loads
                    break
                self.last_p = s.p
                if self.clock:
                    for _ in range(s.loaded // self.B):
                        self.clock.load()
                lr = lr_at(self.optim, self.lr_fraction(s))
                for g in self.opt.param_groups:
                    g["lr"] = lr
                self.loss.add(train_step(self.net, self.opt, self.scaler, s.batch, self.comm, self.amp,
                                         self.optim.grad_clip))
                self.communicate(s.fresh, u)
                c.step += 1
                c.example_loads += s.loaded * self.world
                c.echo_steps += not s.fresh
                if self.due():
                    self.boundary(u)
            if self.stopped_at is not None:
                return "stopped"
            self.boundary(u, final=True)
        except Diverged:
            return "diverged"
        return "complete"

    def lr_fraction(self, s) -> float:
        """The budget fraction of the step about to train on ``s``, for its learning rate: its own
        position, an echo between its batch's load and the next (schedules.lr_position), < 1."""
        c = self.c
        if s.fresh:
            c.load_start, c.since_load = c.example_loads, 0
        else:
            c.since_load += 1
        loads, st = c.example_loads + s.loaded * self.world, self.stream
        if st.policy == "example":
            pool = 0 if st.pool is None else len(echo.leaves(st.pool)[0])
            position = example_position(loads, (pool + self.B) * self.world, st.factor)
        else:
            position = lr_position(c.load_start, loads - c.load_start, c.since_load, uses_ahead(st, s))
        return self.budget.fraction(c, self.sim_s(), position)

    def final_round(self) -> bool:
        """The ranks' models averaged once more at the end (comm.final_round), off the clocks like
        evaluation; returns whether that communicated."""
        if not self.comm.final_round():
            return False
        if self.checksums:
            self.comm.round_checksum()
        return True

    def communicate(self, fresh: bool, u: float) -> None:
        traffic = self.comm.after_step(fresh, u)
        if self.clock:
            self.clock.step(traffic.overlapped, traffic.sequential)
        if traffic.round and self.checksums:  # verification, not training: off the clock
            self.c.wall_s += self.timer.stop()
            self.comm.round_checksum()
            self.timer.start()

    def due(self) -> bool:
        c = self.c
        return (bool(self.every_eval) and c.example_loads >= c.next_eval
                or bool(self.every_ckpt) and c.example_loads >= c.next_ckpt
                or c.step % self.check_every == 0 or (self.world == 1 and self.stop_signal is not None))

    def boundary(self, u: float, final: bool = False) -> None:
        """Between two steps and off the training clock: agree on a stop or a divergence, evaluate
        and record, checkpoint. Every rank reaches it at the same steps."""
        c, enabled = self.c, self.cfg.checkpoint.enabled
        c.wall_s += self.timer.stop()
        self.source.pause()  # not training time: the pipeline must not load ahead meanwhile
        # One verdict for all ranks: a signal or a NaN on any rank stops every rank here, within
        # train.check_every steps, so their checkpoints are of the same step.
        stop, bad = self.comm.reduce_max([float(self.stop_signal is not None), float(not self.loss.finite())])
        if bad:
            rec = self.record(u, full=True)
            raise Diverged(f"the training loss became {rec['train_loss']} by step {c.step}")
        eval_due = final or (bool(self.every_eval) and c.example_loads >= c.next_eval)
        done = self.budget.fraction(c, self.sim_s())
        staged = not final and eval_due and bool(self.cfg.budget.stop_at) and done >= self.cfg.budget.stop_at
        ckpt_due = (final or stop or staged or (bool(self.every_ckpt) and c.example_loads >= c.next_ckpt)
                    or (eval_due and not self.every_ckpt))
        while self.every_eval and c.next_eval <= c.example_loads:
            c.next_eval += self.every_eval
        while self.every_ckpt and c.next_ckpt <= c.example_loads:
            c.next_ckpt += self.every_ckpt
        if final and (self.final_round() or not c.recorded_full):
            c.recorded_step = -1  # this step's record predates the round, or evaluated eval.subset only
        if eval_due and c.recorded_step != c.step:
            rec = self.record(u, full=final)
            if self.clock and not final:
                self.clock.pause()  # the pipeline loaded ahead meanwhile (hardware.pause_s)
            if self.cfg.target.stop:  # rank 0 evaluated: it tells the others
                t = self.cfg.target
                c.at_target = bool(self.comm.reduce_max([float(reached(rec.get(t.metric), t.value, t.mode))])[0])
        if enabled and ckpt_due and c.saved_step != c.step:
            c.saved_step = c.step
            checkpoint.save(self.run_dir, self.ctx.rank, self.state_dict())
        if staged and not c.at_target:  # at the target, target.stop ends the run as complete
            self.stopped_at = done  # the loop ends here; the same command with a larger stop_at continues
        if stop:
            then = ("a checkpoint was written: run the same command again to continue" if enabled else
                    "checkpoint.enabled=false, so no checkpoint was written: the run starts over when run again")
            raise Preempted(f"stopped by signal {self.stop_signal or 'on another rank'} at step {c.step}; {then}")
        self.bar.update(c.example_loads if self.bar_unit == "loads" else c.step, step=c.step, p=self.last_p)
        self.source.resume()
        self.timer.start()

    def record(self, u: float, full: bool = False) -> dict:
        """``full``: evaluate the whole test set, not eval.subset's examples (the last record)."""
        c, ctx, test = self.c, self.ctx, self.test_sets[full]
        wall, idle = self.comm.reduce_max([c.wall_s, self.source.idle_s])
        t0 = time.perf_counter()
        rec = {"step": c.step, "example_loads": c.example_loads, "epoch": c.example_loads / len(self.splits.train),
               "echo_steps": c.echo_steps, "wall_s": wall, "eval_s": c.eval_s,
               "sim_s": self.sim_s(), "idle_s": self.clock.idle_s if self.clock else idle,
               # the rate the last step trained at (the optimizer's, restored with it on resume)
               "real_idle_s": idle, "lr": self.opt.param_groups[0]["lr"] if c.step else lr_at(self.optim, u),
               "p_load": self.last_p, "train_loss": self.loss.take(), "comm_rounds": self.comm.rounds,
               "comm_bytes": self.comm.bytes, "sync_rounds": self.comm.sync_rounds, "world_size": ctx.world}
        # Every rank takes part in averaging the ranks' models; rank 0 evaluates the average, and
        # each rank's own model is restored for training.
        with self.comm.consensus() as model:
            if ctx.is_main:
                ev = evaluate(model, parts.eval_batches(self.cfg, test, ctx.device), self.splits.task, self.amp)
                rec.update(ev.metrics, eval_examples=len(test))
                if full or test is self.splits.test:
                    self.final_examples = ev.per_example  # written at the end, if this is the last record
                metric = "test_acc" if self.splits.task == "classification" else "test_ppl"
                self.bar.update(c.example_loads if self.bar_unit == "loads" else c.step, step=c.step,
                                p=self.last_p, **{metric: rec[metric]})
        rec["eval_comm_bytes"] = self.comm.eval_bytes  # the consensus's payload, apart from comm_bytes
        c.eval_s += time.perf_counter() - t0
        rec["eval_s"] = c.eval_s
        c.records += 1
        c.recorded_step, c.recorded_full = c.step, full or test is self.splits.test
        for s in self.sinks:
            s.write(clean(rec))
        return rec

    # -- around the loop
    @contextmanager
    def session(self):
        """Signals noted for the next boundary, sinks open, the pipeline closed at the end."""
        def on_signal(signum, frame):
            self.stop_signal = signum

        warn = scheduler_signal()  # a submitit job's warning before its time limit: stop as for SIGTERM
        watched = (signal.SIGTERM, signal.SIGINT) + ((warn,) if warn and self.ctx.world == 1 else ())
        old = {s: signal.signal(s, on_signal) for s in watched}
        self.sinks = build_sinks(self.cfg, self.run_dir, self.resolved) if self.ctx.is_main else []
        for s in self.sinks:
            if hasattr(s, "index"):
                s.index = self.c.records  # records already written before the checkpoint are not repeated
        try:
            yield
        except Preempted:
            if warn in old and self.stop_signal == warn:
                signal.signal(warn, old[warn])
                requeue(old[warn], warn)  # the checkpoint is written: submitit requeues the job
            raise
        finally:
            self.bar.close()
            self.source.close()  # stop a background producer
            for sig, h in old.items():
                signal.signal(sig, h)

    def finish(self, status: str) -> dict:
        write_json(self.run_dir / f"rank{self.ctx.rank}.json", self.comm.report())  # decisions, checksums
        if self.ctx.is_main and self.final_examples is not None and status != "stopped":  # the last record's
            write_final_examples(self.run_dir, self.final_examples, self.splits.task)
        summary = make_summary(self.cfg, self.resolved, self.run_dir, status, self.chash, self.ctx.world,
                               self.comm.name)
        summary["stopped_at_target"] = self.c.at_target
        summary["stopped_at_fraction"] = self.stopped_at  # budget.stop_at: continued by a larger one
        if self.ctx.is_main:
            write_json(self.run_dir / "summary.json", summary)
        for s in self.sinks:
            s.close()
        return summary


def uses_ahead(stream, s) -> float:
    """The further uses of the latest batch expected after step ``s`` (schedules.lr_position): batch
    echoing knows its batch's remaining uses; stochastic echoing expects (1 - p) / p (a load with
    probability p at each step); adaptive echoing cannot know when the loader will be ready (0)."""
    if stream.policy == "batch":
        return float(stream.uses_left)
    if stream.policy == "stochastic":
        return (1.0 - s.p) / s.p if s.p > 0 else math.inf
    return 0.0


def check_target(t, task: str) -> None:
    """A target on a metric the data set's task does not record would never be reached, silently."""
    if t.metric not in METRICS[task]:
        raise ConfigError(f"target.metric={t.metric} is not recorded for a {task} data set, whose metrics are "
                          f"{', '.join(METRICS[task])}: choose one of them (e.g. target.metric=test_ppl "
                          "target.mode=min for language modelling).")


def run(cfg: DictConfig, run_dir: Path) -> dict:
    """Train as configured, writing records to ``run_dir`` (continuing a run found there); returns
    the summary."""
    trainer = Trainer(cfg, run_dir)
    trainer.resume()
    with trainer.session():
        status = trainer.train()
    return trainer.finish(status)
