"""`make bench-sweep`: what the figures' sweeps cost on this machine, and what a cheaper design
would cost, written to results/bench/sweep.json and printed.

1. Measured, on the figures' workload (Fashion-MNIST, SmallCNN width 8, one thread, the simulated
   loader at R = 4; the Makefile's SCALE=small FIG_DATA and FIG_HW): each run is ``echo-run`` in a
   child process, its cost the CPU time of that child and everything it waited for (torchrun's
   ranks too), from ``resource.getrusage(RUSAGE_CHILDREN)``. Four methods (sgd, constant p = 1/4,
   cosine, and on_load averaging with p = 1/2 on 2 torchrun ranks, as fig-dp runs it), each with
   the old evaluation (2,000 test images, data.max_test_examples, every ``--old-every`` loads, the
   last record too) and the new (eval.subset=2000 every ``--new-every`` loads, the whole 10,000 at
   the end), side by side; sgd with ``train.compile=true`` too. Each run takes about ``--steps``
   steps (its loads set from its schedule's expected steps per fresh batch). The cheaper of two
   runs of one batch gives each launch's fixed cost (interpreter, imports, data set; torchrun's
   ranks; compilation), and the CPU time of one evaluation per test image is measured in this
   process; what is left is training, reported per epoch (60,000 loads) of each method.
2. Estimated: the whole set's CPU time and its wall time at two sweeps at a time (``make figures``
   runs two on the 2 cores) from a description of each design's grid (``DESIGNS``: methods x rates
   x seeds x epochs, evaluations per epoch, successive halving of the rates on the tuning seeds),
   with each method's cost per epoch from a linear fit of the measured cost against its steps per
   fresh batch. The old design is today's SCALE=small grid; the new one is a proposal at issue
   21's horizons (3 epochs at equal loads; time to 0.87 test accuracy).

Usage: python scripts/bench_sweep.py [--steps N] [--old-every N] [--new-every N] [--no-compile]
[--out PATH]. Exits 2 when Fashion-MNIST is not installed.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
FMNIST = Path("/usr/share/datasets/fashion-mnist")
EPOCH = 60_000  # Fashion-MNIST's training images: loads per epoch
SUBSET, TEST = 2_000, 10_000
WORKLOAD = ("dataset=fashion_mnist", "model.width=8", "eval.batch_size=1000", "hardware=ratio", "hardware.ratio=4",
            "train.threads=1", "logger.progress=false", "checkpoint.enabled=false")
DP = ("launcher=torchrun", "launcher.nproc_per_node=2", "data.batch_size=32", "hardware.comm_latency_s=0.005",
      "hardware.comm_bandwidth_Bps=1e8")
METHODS = {"sgd": ("schedule=none",), "constant(p=0.25)": ("schedule=constant", "schedule.p=0.25"),
           "cosine": ("schedule=cosine",), "on_load x2": ("schedule=constant", "comm=on_load", *DP)}

# Each design: figure -> rows of (methods, rates, tuning seeds, measuring seeds, rates run on the
# measuring seeds, epochs per run, evaluations per epoch). A method is its steps per fresh batch, a
# schedule's name or "dp" (2 ranks), or (steps per fresh batch, epochs) where its own epochs differ.
# Runs to a target: SGD's loads to target, shrinking as r^-0.16 with r reuses per fresh batch (the
# pilots of fig-speedup: 14,000-18,000 loads to 0.80 for SGD, ~10,000 for r = 16).
SPEEDUP = [1, 2, 4, 8, 16]
to_target = lambda sgd_epochs: [(r, round(sgd_epochs * r ** -0.16, 3)) for r in SPEEDUP]  # noqa: E731
# Successive halving (new design): the rates on the tuning seeds stop at 1/4 of the budget, the
# worse half (rounded down) stays stopped, the rest go on to 1/2, where the worse half stops
# again; the measuring seeds run the rate the tuning seeds chose, to the end.
OLD = {  # today's SCALE=small grid (Makefile): every seed runs every rate; speed-up runs stop at 0.80
    "speedup (to 0.80: SGD ~0.27 epoch)": [(to_target(0.27), 5, 2, 3, 5, None, EPOCH / 1280)],
    "schedules": [(["none", "constant", "cosine", "linear", "step"], 6, 2, 3, 6, 12_800 / EPOCH, EPOCH / 1600)],
    "augment": [([1, 4, 4], 5, 2, 3, 5, 10_240 / EPOCH, EPOCH / 2048)],
    "dp (2 ranks)": [(["dp"] * 5, 1, 2, 3, 1, 12_800 / EPOCH, EPOCH / 1600),  # one-rate strategies
                     (["dp"] * 2, 5, 2, 3, 5, 12_800 / EPOCH, EPOCH / 1600),  # on_load, grad_accum
                     (["dp"], 5, 2, 3, 5, 12_800 / EPOCH, EPOCH / 6400),  # equal steps: allreduce
                     (["dp"], 5, 2, 3, 5, 51_200 / EPOCH, EPOCH / 6400),  # equal steps: grad_accum
                     (["dp"] * 3, 1, 2, 3, 1, 12_800 / EPOCH, EPOCH / 1600)],  # DiLoCo
}
NEW = {  # a proposal at issue 21's horizons: >= 5 rates each, successive halving, subset evaluation
    "speedup (to 0.87: SGD assumed 1.5 epochs)": [(to_target(1.5), 5, 2, 3, 1, None, EPOCH / 3000)],
    "schedules": [(["none", "constant", "cosine", "linear", "step"], 5, 2, 3, 1, 3.0, EPOCH / 6000)],
    "augment": [([1, 4, 4], 5, 2, 3, 1, 3.0, EPOCH / 6000)],
    "dp (2 ranks)": [(["dp"] * 4, 5, 2, 3, 1, 3.0, EPOCH / 6000)],
}
DESIGNS = {"old": (OLD, False, "old"), "new": (NEW, True, "new")}  # (grid, successive halving, evaluation)
STAGES = (0.25, 0.5)


def halving_runs(rates: int) -> float:
    """Budget fractions run by one tuning seed over ``rates`` rates with successive halving."""
    left, done = rates, 0.0
    for f in STAGES:
        stopped = left // 2
        done += stopped * f
        left -= stopped
    return done + left * 1.0


def need_data() -> None:
    if not (FMNIST / "train-images-idx3-ubyte.gz").exists() and not (FMNIST / "train-images-idx3-ubyte").exists():
        print(f"bench_sweep: error: Fashion-MNIST is not in {FMNIST}. Install it with\n"
              "  sudo apt-get install dataset-fashion-mnist\nthen run `make bench-sweep` again.", file=sys.stderr)
        sys.exit(2)


def child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def launch(overrides: tuple, run_dir: Path) -> dict:
    """``echo-run OVERRIDES`` in a child process: its CPU and wall seconds and what its records say."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cpu0, t0 = child_cpu(), time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "runner.cli", *WORKLOAD, *overrides, f"hydra.run.dir={run_dir}"],
                       cwd=ROOT, env=env, capture_output=True, text=True)
    cpu, wall = child_cpu() - cpu0, time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"bench_sweep: echo-run {' '.join(overrides)} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    recs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evaluated = sum(r.get("eval_examples", 0) for r in recs)
    return {"cpu_s": round(cpu, 2), "wall_s": round(wall, 2), "records": len(recs), "evaluated_examples": evaluated,
            "loads": recs[-1]["example_loads"], "steps": recs[-1]["step"], "final_test_acc": recs[-1]["test_acc"]}


def eval_cost(repeats: int = 3) -> float:
    """CPU seconds per evaluated test image (width-8 SmallCNN, one thread, batches of 1,000): the
    whole 10,000 evaluated with the trainer's own evaluate() and eval_batches()."""
    from runner import config, data, parts, pipeline
    from runner.step import amp_context, evaluate

    torch.set_num_threads(1)
    cfg = config.compose(list(WORKLOAD))
    splits = data.build(cfg.data)
    model = parts.model(cfg, splits.info, torch.device("cpu"))
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        evaluate(model, pipeline.eval_batches(splits.test, 1000), splits.task, amp_context("off", torch.device("cpu")))
        times.append(time.process_time() - t0)
    return statistics.median(times) / len(splits.test)


def steps_per_load(*overrides: str) -> float:
    """Expected steps per fresh batch over a run, the mean of 1/p(u) over the budget fraction u."""
    from runner import config
    from runner.schema import ScheduleKeys

    p = config.build(config.compose([o for o in overrides if o.startswith("schedule")]).schedule, ScheduleKeys)
    n = 1000
    return sum(1.0 / p((i + 0.5) / n) for i in range(n)) / n


def measure(args) -> dict:
    per_image = eval_cost()
    out: dict = {"eval_cpu_s_per_image": per_image, "runs": {}}
    one_batch = ("budget.example_loads=64", "eval.every_loads=null", "data.max_test_examples=1000")
    evals = {"old": (f"data.max_test_examples={SUBSET}", f"eval.every_loads={args.old_every}"),
             "new": (f"eval.subset={SUBSET}", f"eval.every_loads={args.new_every}")}
    with tempfile.TemporaryDirectory() as tmp:
        n = iter(range(1000))
        go = lambda *o: launch(o, Path(tmp) / str(next(n)))  # noqa: E731
        least = lambda *o: min((go(*o, *one_batch) for _ in range(2)), key=lambda r: r["cpu_s"])  # noqa: E731
        fixed = {"local": least("schedule=none"), "torchrun x2": least(*METHODS["on_load x2"])}
        if args.compile:
            try:  # inductor caches its code on disk: the later runs of a sweep compile faster than the first
                fixed["local, compiled"] = least("schedule=none", "train.compile=true")
            except SystemExit as err:
                print(f"bench_sweep: train.compile=true left out: {str(err)[-300:]}", file=sys.stderr)
                args.compile = False
        for k, r in fixed.items():  # less its two evaluations of 1,000 images
            r["fixed_cpu_s"] = round(r["cpu_s"] - r["evaluated_examples"] * per_image, 2)
        out["fixed"] = fixed
        cases = [(m, e, False) for m in METHODS for e in evals]
        if args.compile:
            cases.append(("sgd", "new", True))
        for m, e, comp in cases:
            try:
                # about --steps steps each: every method's training cost well above the launches' spread
                loads = 64 * round(args.steps / steps_per_load(*METHODS[m]))
                r = go(*METHODS[m], *evals[e], f"budget.example_loads={loads}",
                       *(("train.compile=true",) if comp else ()))
            except SystemExit as err:  # torch.compile needs a C compiler: say so and go on
                if not comp:
                    raise
                out["runs"][f"{m} | eval {e} | compile"] = {"error": str(err)[-500:]}
                continue
            base = fixed["local, compiled" if comp else "torchrun x2" if "x2" in m else "local"]["fixed_cpu_s"]
            train_s = r["cpu_s"] - base - r["evaluated_examples"] * per_image
            r["train_cpu_s_per_epoch"] = round(train_s / (r["loads"] / EPOCH), 1)
            r["steps_per_fresh_batch"] = round(r["steps"] / (r["loads"] / 64), 3)  # 64 loads per step, all ranks
            # what one seed of this method costs per epoch under that evaluation, in-training evaluations included
            every = args.old_every if e == "old" else args.new_every
            r["cpu_s_per_method_seed_epoch"] = round(r["train_cpu_s_per_epoch"] + EPOCH / every * SUBSET * per_image, 1)
            out["runs"][f"{m} | eval {e}{' | compile' if comp else ''}"] = r
    return out


def cost_model(m: dict) -> dict:
    """Training CPU seconds per epoch against steps per fresh batch (a least-squares line through
    the single-process runs, each at its measured steps per fresh batch), and the 2-rank run's."""
    pts = [(r["steps_per_fresh_batch"], r["train_cpu_s_per_epoch"]) for k, r in m["runs"].items()
           if "x2" not in k and "compile" not in k]
    slope, intercept = np.polyfit(*zip(*pts), 1)  # least squares over sgd, constant p = 1/4 and cosine
    dp = [r["train_cpu_s_per_epoch"] for k, r in m["runs"].items() if "x2" in k]
    return {"intercept": float(intercept), "slope_per_reuse": float(slope), "dp": statistics.mean(dp),
            "largest_residual": max(abs(y - (intercept + slope * x)) for x, y in pts)}


def estimate(m: dict, model: dict) -> dict:
    reuse = {s: steps_per_load(f"schedule={s}") for s in ("none", "constant", "cosine", "linear", "step")}
    per_image = m["eval_cpu_s_per_image"]
    fixed = {"local": m["fixed"]["local"]["fixed_cpu_s"], "dp": m["fixed"]["torchrun x2"]["fixed_cpu_s"]}
    out = {}
    for name, (grid, halving, ev) in DESIGNS.items():
        figs, total, runs_n = {}, 0.0, 0
        for fig, rows in grid.items():
            cpu = 0.0
            for methods, rates, tune, meas, meas_rates, epochs, evals_per_epoch in rows:
                for meth in methods:
                    dp, ep = meth == "dp", epochs
                    if isinstance(meth, (tuple, list)):
                        meth, ep = meth
                    r = meth if isinstance(meth, (int, float)) else reuse.get(meth, 1.0)
                    per_epoch = model["dp"] if dp else model["intercept"] + model["slope_per_reuse"] * r
                    per_epoch += evals_per_epoch * SUBSET * per_image
                    final = (TEST if ev == "new" else SUBSET) * per_image
                    run_fractions = tune * (halving_runs(rates) if halving else rates) + meas * meas_rates
                    launches = tune * rates + meas * meas_rates
                    if halving:  # a stage's survivors are continued by a new launch each
                        left = rates
                        for _ in STAGES:
                            left -= left // 2
                            launches += tune * left
                    cpu += run_fractions * ep * per_epoch + launches * fixed["dp" if dp else "local"]
                    cpu += (tune * rates + meas * meas_rates) * final
                    runs_n += tune * rates + meas * meas_rates
            figs[fig] = round(cpu / 60, 1)
            total += cpu
        out[name] = {"cpu_min_by_figure": figs, "runs": runs_n, "cpu_min": round(total / 60, 1),
                     "wall_min_two_at_a_time": round(total / 60 / 2, 1)}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=500, help="steps per measured run (sgd: 32,000 loads, 0.53 epoch)")
    ap.add_argument("--old-every", type=int, default=1_600, help="the old evaluation's eval.every_loads")
    ap.add_argument("--new-every", type=int, default=6_000, help="the new evaluation's eval.every_loads")
    ap.add_argument("--no-compile", dest="compile", action="store_false", help="leave out train.compile=true")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "bench" / "sweep.json")
    args = ap.parse_args(argv)
    need_data()
    t0 = time.perf_counter()
    m = measure(args)
    model = cost_model(m)
    est = estimate(m, model)
    result = {"settings": vars(args) | {"out": str(args.out)}, "machine": {"cpus": os.cpu_count(),
              "python": platform.python_version(), "torch": torch.__version__}, "measured": m,
              "cost_model": {k: round(v, 2) for k, v in model.items()}, "designs": DESIGNS_DESCRIPTION,
              "estimate": est, "bench_wall_s": round(time.perf_counter() - t0, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'run':42} {'cpu_s':>7} {'train cpu_s/epoch':>18} {'cpu_s/method-seed-epoch':>24}")
    for k, r in m["runs"].items():
        if "error" in r:
            print(f"{k:42} failed: {r['error'][:80]}")
            continue
        print(f"{k:42} {r['cpu_s']:7.1f} {r['train_cpu_s_per_epoch']:18.1f} {r['cpu_s_per_method_seed_epoch']:24.1f}")
    print("fixed cost per launch (cpu_s): " + ", ".join(f"{k} {r['fixed_cpu_s']:.1f}" for k, r in m["fixed"].items()))
    print(f"evaluation: {m['eval_cpu_s_per_image'] * 1e3:.3f} cpu ms per test image")
    for name, e in est.items():
        print(f"{name} design: {e['runs']} runs, {e['cpu_min']:.0f} CPU-minutes, ~{e['wall_min_two_at_a_time']:.0f} "
              f"minutes at two at a time; by figure {e['cpu_min_by_figure']}")
    print(f"wrote {args.out}")
    return 0


DESIGNS_DESCRIPTION = {
    "row": "[methods (steps per fresh batch, a schedule's name, or dp), rates, tuning seeds, measuring seeds, "
           "rates on the measuring seeds, epochs per run, evaluations per epoch]",
    "old": {"grid": OLD, "successive_halving": False, "evaluation": f"{SUBSET} test images at every record"},
    "new": {"grid": NEW, "successive_halving": f"tuning seeds: stop the worse half at {STAGES} of the budget",
            "evaluation": f"eval.subset={SUBSET} during training, the whole {TEST} at the end"},
}

if __name__ == "__main__":
    sys.exit(main())
