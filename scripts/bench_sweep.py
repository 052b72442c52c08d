"""`make bench-sweep`: what the figures' sweeps cost on this machine, the old design and the new one
(the Makefile's) estimated side by side, beside the new one's records; written to
results/bench/sweep.json and printed.

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
   runs two on the 2 cores), for the old design (``OLD``: every seed runs every rate, 2,000 test
   images at every record) and the new one the Makefile's figures section implements (``NEW``:
   SCALE=small, each tuned method by successive halving with scripts/halving.py, ``plan()``;
   eval.subset=1000 during training, the whole 10,000 at the end), with each method's cost per
   epoch from a linear fit of the measured cost against its steps per fresh batch. ``--measured``
   reuses an earlier sweep.json's measured block instead of measuring: the designs are estimated
   again in seconds, without training.
3. Records: the new design's actual cost, read from the run records under ``--records`` (results/
   small): runs, per figure directory the training + evaluation seconds (each run's last record:
   wall_s and eval_s, both cumulative) times its world size plus the measured fixed cost per launch,
   and the whole set's elapsed time (file times: valid on the machine that ran the runs only).

Usage: python scripts/bench_sweep.py [--steps N] [--old-every N] [--new-every N] [--no-compile]
[--measured [SWEEP_JSON]] [--records DIR] [--out PATH]. Exits 2 when Fashion-MNIST is not installed
(and measuring), or when --measured's file holds no usable measured block.
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
import pandas as pd
import torch
import yaml
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parent.parent
FMNIST = Path("/usr/share/datasets/fashion-mnist")
SWEEP_JSON = ROOT / "results" / "bench" / "sweep.json"
EPOCH = 60_000  # Fashion-MNIST's training images: loads per epoch
SUBSET, TEST = 2_000, 10_000
WORKLOAD = ("dataset=fashion_mnist", "model.width=8", "eval.batch_size=1000", "hardware=ratio", "hardware.ratio=4",
            "train.threads=1", "logger.progress=false", "checkpoint.enabled=false")
DP = ("launcher=torchrun", "launcher.nproc_per_node=2", "data.batch_size=32", "hardware.comm_latency_s=0.005",
      "hardware.comm_bandwidth_Bps=1e8")
METHODS = {"sgd": ("schedule=none",), "constant(p=0.25)": ("schedule=constant", "schedule.p=0.25"),
           "cosine": ("schedule=cosine",), "on_load x2": ("schedule=constant", "comm=on_load", *DP)}

# The old design: figure -> rows of (methods, rates, tuning seeds, measuring seeds, rates run on the
# measuring seeds, epochs per run, evaluations per epoch); every seed runs every rate, no halving.
# A method is its steps per fresh batch, a schedule's name or "dp" (2 ranks), or (steps per fresh
# batch, epochs) where its own epochs differ. Runs to a target: SGD's loads to target, shrinking as
# r^-0.16 with r reuses per fresh batch (the pilots of fig-speedup: 14,000-18,000 loads to 0.80 for
# SGD, ~10,000 for r = 16).
SPEEDUP = [1, 2, 4, 8, 16]
to_target = lambda sgd_epochs: [(r, round(sgd_epochs * r ** -0.16, 3)) for r in SPEEDUP]  # noqa: E731
OLD = {  # the SCALE=small grid before successive halving; speed-up runs stopped at 0.80
    "speedup (to 0.80: SGD ~0.27 epoch)": [(to_target(0.27), 5, 2, 3, 5, None, EPOCH / 1280)],
    "schedules": [(["none", "constant", "cosine", "linear", "step"], 6, 2, 3, 6, 12_800 / EPOCH, EPOCH / 1600)],
    "augment": [([1, 4, 4], 5, 2, 3, 5, 10_240 / EPOCH, EPOCH / 2048)],
    "dp (2 ranks)": [(["dp"] * 5, 1, 2, 3, 1, 12_800 / EPOCH, EPOCH / 1600),  # one-rate strategies
                     (["dp"] * 2, 5, 2, 3, 5, 12_800 / EPOCH, EPOCH / 1600),  # on_load, grad_accum
                     (["dp"], 5, 2, 3, 5, 12_800 / EPOCH, EPOCH / 6400),  # equal steps: allreduce
                     (["dp"], 5, 2, 3, 5, 51_200 / EPOCH, EPOCH / 6400),  # equal steps: grad_accum
                     (["dp"] * 3, 1, 2, 3, 1, 12_800 / EPOCH, EPOCH / 1600)],  # DiLoCo
}

# The new design: the Makefile's figures section at SCALE=small. Each tuned method is successive
# halving (scripts/halving.py): (1) seed 0 runs every rate of its grid to SH_STOP of the budget
# (budget.stop_at; runs to a target run to it or to the cap instead); (2) the SH_KEEP best rates run
# to the end on the tuning seed (TUNE_SEEDS = 1), continuing from where they stopped (one
# more launch each); (3) the better of those runs on the MEASURE_SEEDS measuring seeds.
SH_STOP, SH_KEEP, TUNE_SEEDS, MEASURE_SEEDS = 0.25, 2, 1, 3
BATCH = 64  # loads per step of the SmallCNN figures (2 ranks of 32 in the data-parallel ones)
NEW_SUBSET = 1_000  # eval.subset during training; the whole 10,000 at the end
SPEEDUP_NEW = (1, 2, 4)
SGD_EPOCHS_TO_TARGET = 2.0  # SGD to 0.87 under the cosine rate over the cap, about two epochs (r^-0.16 with r reuses)
SPEEDUP_CAP = (180_000, None)  # budget.example_loads, budget.steps of a run to 0.87
MOB_STEP_S, MOB_BATCH, MOB_FACTOR = 0.25, 32, 20  # MobileNetV3-Small: s per step of 32 on one core, ~20x the SmallCNN
LM_BATCH = 16  # GPT-2 tiny: blocks per step, each costed as one SmallCNN image (an assumption, not measured)
# A row: (kind, steps per fresh batch or schedule name, rates, budget loads (None: to the target),
# eval.every_loads, images per in-training evaluation, images in the last one, plan). kind: "cnn"
# (one process), "dp" (2 torchrun ranks), "mobilenet", "lm". plan: "staged" (the three stages with
# budget.stop_at), "target" (stage 1 runs to the target), "outer" (DiLoCo's outer grid: 6 settings on
# the tuning seeds to SH_STOP, no further stage).
_3EP, _EV = 3 * EPOCH, 11_250
_SCHED = lambda s, rates=6: ("cnn", s, rates, _3EP, _EV, NEW_SUBSET, TEST, "staged")  # noqa: E731
_DP = lambda r, rates=5, loads=_3EP: ("dp", r, rates, loads, _EV, NEW_SUBSET, TEST, "staged")  # noqa: E731
NEW = {
    "speedup": [("cnn", r, 6, None, 2_560, NEW_SUBSET, TEST, "target") for r in SPEEDUP_NEW],
    "schedules": [_SCHED(s) for s in ("none", "constant", "cosine", "linear", "step")],
    "augment": [_SCHED("constant")],  # constant(p=0.5)+reaug; SGD and constant p = 0.5 are the schedules'
    # sgd+allreduce, sgd+periodic, sgd+grad_accum; on_load, probabilistic, allreduce with p = 1/2
    "data_parallel": [_DP(1), _DP(1), _DP(1), _DP(2), _DP(2), _DP(2)],
    "diloco_outer": [("dp", 1, 6, _3EP, _EV, NEW_SUBSET, TEST, "outer")],  # 3 outer rates x 2 momenta
    "diloco": [_DP(1)],
    "dp_equal_steps": [_DP(1, loads=703 * BATCH), _DP(1, loads=2_812 * BATCH)],  # allreduce; grad_accum k = 4
    "modern_cnn": [("mobilenet", r, 5, 9_600, 2_400, 500, TEST, "staged") for r in (1, 2)],
    "modern_lm": [("lm", r, 5, 3_200, 400, 256, 256, "staged") for r in (1, 2)],
}


def plan(kind: str, rates: int) -> dict:
    """One tuned method's runs under a plan: budgets (whole budgets trained, over every run), runs
    (directories), launches (a continued run is launched twice) and finals (runs that end with an
    evaluation of the whole test set; a run stopped at a stage evaluated eval.subset last)."""
    if kind == "staged":
        return {"budgets": rates * SH_STOP + SH_KEEP * (1 - SH_STOP) + SH_KEEP * (TUNE_SEEDS - 1) + MEASURE_SEEDS,
                "runs": rates + SH_KEEP * (TUNE_SEEDS - 1) + MEASURE_SEEDS,
                "launches": rates + SH_KEEP * TUNE_SEEDS + MEASURE_SEEDS, "finals": SH_KEEP * TUNE_SEEDS + MEASURE_SEEDS}
    if kind == "target":  # the tuning seed's runs end at the target (or the cap) in stage 1
        n = rates + SH_KEEP * (TUNE_SEEDS - 1) + MEASURE_SEEDS
        return {"budgets": None, "runs": n, "launches": n, "finals": n}
    if kind == "outer":
        n = rates * TUNE_SEEDS
        return {"budgets": n * SH_STOP, "runs": n, "launches": n, "finals": 0}
    raise ValueError(kind)


def target_loads(r: float, rates: int) -> float:
    """Loads run by one level of the speed-up figure over its plan: the kept rates' runs (seed 0,
    seed 1, the measuring seeds) at SGD's epochs to 0.87 times r^-0.16, the others to the cap (an
    upper bound: a rate too small or too large misses 0.87); every run within budget.steps."""
    cap = SPEEDUP_CAP[0] if SPEEDUP_CAP[1] is None else min(SPEEDUP_CAP[0], SPEEDUP_CAP[1] * BATCH / r)
    hit = min(cap, SGD_EPOCHS_TO_TARGET * r ** -0.16 * EPOCH)
    return (SH_KEEP * TUNE_SEEDS + MEASURE_SEEDS) * hit + (rates - SH_KEEP) * cap


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


def estimate_old(m: dict, model: dict, reuse: dict) -> dict:
    """The old design's whole-set CPU time: every seed runs every rate to the end, the old
    evaluation (SUBSET images at every record and at the end), a launch per run."""
    per_image = m["eval_cpu_s_per_image"]
    fixed = {"local": m["fixed"]["local"]["fixed_cpu_s"], "dp": m["fixed"]["torchrun x2"]["fixed_cpu_s"]}
    figs, runs_by, total, runs_n = {}, {}, 0.0, 0
    for fig, rows in OLD.items():
        cpu, n_fig = 0.0, 0
        for methods, rates, tune, meas, meas_rates, epochs, evals_per_epoch in rows:
            for meth in methods:
                dp, ep = meth == "dp", epochs
                if isinstance(meth, (tuple, list)):
                    meth, ep = meth
                r = meth if isinstance(meth, (int, float)) else reuse.get(meth, 1.0)
                per_epoch = model["dp"] if dp else model["intercept"] + model["slope_per_reuse"] * r
                per_epoch += evals_per_epoch * SUBSET * per_image
                n = tune * rates + meas * meas_rates
                cpu += n * (ep * per_epoch + fixed["dp" if dp else "local"] + SUBSET * per_image)
                n_fig += n
        figs[fig], runs_by[fig] = round(cpu / 60, 1), n_fig
        total += cpu
        runs_n += n_fig
    return {"cpu_min_by_figure": figs, "runs_by_figure": runs_by, "runs": runs_n, "cpu_min": round(total / 60, 1),
            "wall_min_two_at_a_time": round(total / 60 / 2, 1)}


def estimate_new(m: dict, model: dict, reuse: dict) -> dict:
    """The new design's whole-set CPU time (NEW, plan()): training at each run's measured cost per
    load, its evaluations (eval.subset's images every eval.every_loads, the whole test set at the
    end of the runs that end), a launch's fixed cost per launch."""
    per_image = m["eval_cpu_s_per_image"]
    fixed = {"local": m["fixed"]["local"]["fixed_cpu_s"], "dp": m["fixed"]["torchrun x2"]["fixed_cpu_s"]}
    line = lambda r: model["intercept"] + model["slope_per_reuse"] * r  # noqa: E731  (CPU-s per epoch)
    # the 2-rank cost was measured at on_load p = 1/2's steps per fresh batch: other levels scale as the line
    dp_r = [r["steps_per_fresh_batch"] for k, r in m.get("runs", {}).items() if "x2" in k and "error" not in r]
    per_load = {"cnn": lambda r: line(r) / EPOCH,
                "dp": lambda r: model["dp"] * (line(r) / line(statistics.mean(dp_r)) if dp_r else 1.0) / EPOCH,
                "mobilenet": lambda r: MOB_STEP_S * r / MOB_BATCH,
                "lm": lambda r: line(1.0) / EPOCH * BATCH * r / LM_BATCH}  # a SmallCNN step per step
    image = {"cnn": per_image, "dp": per_image, "mobilenet": MOB_FACTOR * per_image, "lm": per_image}
    figs, runs_by, total, runs_n = {}, {}, 0.0, 0
    for fig, rows in NEW.items():
        cpu, n_fig = 0.0, 0
        for kind, meth, rates, budget, every, subset, full, how in rows:
            r = meth if isinstance(meth, (int, float)) else reuse[meth]
            p = plan(how, rates)
            loads = target_loads(r, rates) if budget is None else p["budgets"] * budget
            cpu += loads * per_load[kind](r)
            cpu += (loads / every * subset + p["finals"] * full) * image[kind]
            cpu += p["launches"] * fixed["dp" if kind == "dp" else "local"]
            n_fig += p["runs"]
        figs[fig], runs_by[fig] = round(cpu / 60, 1), n_fig
        total += cpu
        runs_n += n_fig
    return {"cpu_min_by_figure": figs, "runs_by_figure": runs_by, "runs": runs_n, "cpu_min": round(total / 60, 1),
            "wall_min_two_at_a_time": round(total / 60 / 2, 1)}


def estimate(m: dict, model: dict) -> dict:
    """Both designs from a measured block (measure()) and its cost model (cost_model())."""
    reuse = {s: steps_per_load(f"schedule={s}") for s in ("none", "constant", "cosine", "linear", "step")}
    return {"old": estimate_old(m, model, reuse), "new": estimate_new(m, model, reuse)}


# ---- the records: what the new design actually cost, from the run directories ----
FIGURE_DIRS = ("speedup", "schedules", "augment", "data_parallel", "diloco_outer", "diloco", "dp_equal_steps",
               "modern_cnn", "modern_lm")


def last_record(path: Path) -> dict | None:
    """The last complete line of a metrics.jsonl (a live run may be writing the next one)."""
    for line in reversed(path.read_text().splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return None


def run_row(run: Path) -> dict:
    """One run directory: its training and evaluation seconds (metrics.jsonl keeps both cumulative
    over the run, across a staged run's launches: its last record holds the totals), world size,
    launches, status, and its start and end times (file modification times)."""
    hydra = run / ".hydra"
    rec = last_record(run / "metrics.jsonl") if (run / "metrics.jsonl").exists() else None
    # The first launch's overrides stay as written; a staged run that was continued has its stored
    # config's budget.stop_at replaced (runner.runs): then it was launched twice.
    first = OmegaConf.load(hydra / "overrides.yaml") if (hydra / "overrides.yaml").exists() else []
    first_stop = next((str(o).split("=", 1)[1] for o in first if str(o).startswith("budget.stop_at=")), None)
    stored = OmegaConf.select(OmegaConf.load(hydra / "config.yaml"), "budget.stop_at")
    continued = first_stop is not None and stored != yaml.safe_load(first_stop)
    summary = run / "summary.json"
    try:
        status = json.loads(summary.read_text()).get("status", "unfinished")
    except (OSError, ValueError):  # not written yet
        status = "unfinished"
    # .hydra's own time moves when a continued run's config is replaced: its oldest entry is the claim
    start = min(p.stat().st_mtime for p in (hydra, *hydra.iterdir()))
    return {"train_s": rec["wall_s"] if rec else 0.0, "eval_s": rec["eval_s"] if rec else 0.0,
            "world_size": rec.get("world_size", 1) if rec else 1, "launches": 1 + continued,
            "status": status, "start": start, "end": summary.stat().st_mtime if summary.exists() else None}


def records(root: Path, m: dict) -> dict:
    """The new design's actual cost from the runs under ``root`` (results/small): per figure
    directory, the sum over its runs of (training + evaluation seconds) x world size plus each
    launch's fixed cost (the measured block's, local or torchrun x2), and the whole set's elapsed
    time, the last summary.json's time less the first claim's (valid on the machine that ran them:
    a git checkout sets every file's time)."""
    rows = []
    for fig in FIGURE_DIRS:
        for cfg in sorted((root / fig).rglob("config.yaml")) if (root / fig).is_dir() else []:
            if cfg.parent.name == ".hydra":
                rows.append(run_row(cfg.parent.parent) | {"figure": fig})
    out = {"root": str(root), "runs": len(rows)}
    if not rows:
        return out | {"note": f"no runs under {root}'s figure directories"}
    df = pd.DataFrame(rows)
    fixed = {1: m["fixed"]["local"]["fixed_cpu_s"], 2: m["fixed"]["torchrun x2"]["fixed_cpu_s"]}
    df["cpu_s"] = (df.train_s + df.eval_s) * df.world_size + df.launches * df.world_size.map(
        lambda w: fixed[1] if w == 1 else fixed[2] * w / 2)
    by = df.groupby("figure", sort=False)
    ends = df.end.dropna()
    return out | {
        "runs_by_status": df.status.value_counts().to_dict(), "launches": int(df.launches.sum()),
        "runs_by_figure": by.size().to_dict(), "cpu_min_by_figure": (by.cpu_s.sum() / 60).round(1).to_dict(),
        "cpu_min": round(float(df.cpu_s.sum()) / 60, 1),
        "elapsed_min": round((float(ends.max()) - float(df.start.min())) / 60, 1) if len(ends) else None,
        "note": "training + evaluation seconds from each run's last record (wall_s, eval_s: cumulative), x its "
                "world size, plus a launch's measured fixed cost per launch; elapsed: the last summary.json's "
                "modification time less the first run's claim (.hydra), valid on the machine that ran them only"}


def load_measured(path: Path) -> dict:
    """The "measured" block of an earlier sweep.json (--measured), checked enough to estimate from."""
    try:
        d = json.loads(path.read_text())
        m = d["measured"]
        float(m["eval_cpu_s_per_image"])  # what estimate() and records() read, present and numbers
        float(m["fixed"]["local"]["fixed_cpu_s"]) + float(m["fixed"]["torchrun x2"]["fixed_cpu_s"])
        cost_model(m)
    except (OSError, ValueError, KeyError, TypeError) as err:
        print(f"bench_sweep: error: --measured {path}: cannot reuse its measurements ({type(err).__name__}: {err}). "
              "Give a results/bench/sweep.json written by a full `make bench-sweep` (it holds a \"measured\" block "
              "with runs, fixed and eval_cpu_s_per_image), or drop --measured to measure again.", file=sys.stderr)
        sys.exit(2)
    return {"measured": m, "settings": d.get("settings"), "machine": d.get("machine")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=500, help="steps per measured run (sgd: 32,000 loads, 0.53 epoch)")
    ap.add_argument("--old-every", type=int, default=1_600, help="the old evaluation's eval.every_loads")
    ap.add_argument("--new-every", type=int, default=6_000, help="the new evaluation's eval.every_loads")
    ap.add_argument("--no-compile", dest="compile", action="store_false", help="leave out train.compile=true")
    ap.add_argument("--out", type=Path, default=SWEEP_JSON)
    ap.add_argument("--measured", type=Path, nargs="?", const=SWEEP_JSON, default=None,
                    help=f"reuse the measured block of this sweep.json (default {SWEEP_JSON.relative_to(ROOT)}): "
                         "estimate again without training")
    ap.add_argument("--records", type=Path, default=ROOT / "results" / "small",
                    help="the results tree whose run records give the new design's actual cost")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    if args.measured is not None:
        earlier = load_measured(args.measured)
        m = earlier["measured"]
    else:
        need_data()
        m, earlier = measure(args), None
    model = cost_model(m)
    est = estimate(m, model)
    rec = records(args.records, m) if args.records.is_dir() else {
        "root": str(args.records), "note": f"{args.records} is absent: no records to compare"}
    result = {"settings": vars(args) | {"out": str(args.out), "records": str(args.records),
                                        "measured": None if args.measured is None else str(args.measured)},
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__},
              "measured": m,
              "cost_model": {k: round(v, 2) for k, v in model.items()}, "designs": DESIGNS_DESCRIPTION,
              "estimate": est, "records": rec, "bench_wall_s": round(time.perf_counter() - t0, 1)}
    if earlier:  # its settings and machine are the measurement's, not this estimate's
        result["measured_with"] = {k: earlier[k] for k in ("settings", "machine")}
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
    print(table(est, rec))
    if "note" in rec:
        print(f"records: {rec['note']}")
    print(f"wrote {args.out}")
    return 0


def table(est: dict, rec: dict) -> str:
    """The new design's estimate beside its records per figure (CPU-minutes, runs), then the totals
    of the old design, the new and the records."""
    got_m, got_n = rec.get("cpu_min_by_figure", {}), rec.get("runs_by_figure", {})
    new = est["new"]
    cell = lambda v: "-" if v is None else f"{v:g}"  # noqa: E731
    lines = [f"{'figure':16} {'new est. CPU-min':>17} {'records CPU-min':>16} {'est. runs':>10} {'records runs':>13}"]
    for fig in NEW:
        lines.append(f"{fig:16} {new['cpu_min_by_figure'][fig]:17g} {cell(got_m.get(fig)):>16} "
                     f"{new['runs_by_figure'][fig]:10d} {cell(got_n.get(fig)):>13}")
    lines.append(f"{'whole set':16} {'old est.':>17} {'new est.':>16} {'records':>10}")
    lines.append(f"{'  runs':16} {est['old']['runs']:17d} {new['runs']:16d} {cell(rec.get('runs')):>10}")
    lines.append(f"{'  CPU-minutes':16} {est['old']['cpu_min']:17g} {new['cpu_min']:16g} {cell(rec.get('cpu_min')):>10}")
    lines.append(f"{'  wall minutes':16} {est['old']['wall_min_two_at_a_time']:17g} "
                 f"{new['wall_min_two_at_a_time']:16g} {cell(rec.get('elapsed_min')):>10}"
                 "   (estimates: two at a time; records: elapsed)")
    return "\n".join(lines)


DESIGNS_DESCRIPTION = {
    "old": {"row": "[methods (steps per fresh batch, a schedule's name, or dp), rates, tuning seeds, measuring "
                   "seeds, rates on the measuring seeds, epochs per run, evaluations per epoch]",
            "grid": OLD, "successive_halving": False, "evaluation": f"{SUBSET} test images at every record"},
    "new": {"row": "[kind (cnn, dp: 2 torchrun ranks, mobilenet, lm), steps per fresh batch or schedule, rates, "
                   "budget loads (null: to 0.87 test accuracy), eval.every_loads, images per evaluation during "
                   "training, images in the last, plan]",
            "grid": NEW,
            "successive_halving": f"seed 0 runs every rate to {SH_STOP} of the budget (runs to a target: to it or "
                                  f"the cap {SPEEDUP_CAP} loads, steps); the {SH_KEEP} best continue to the end on the "
                                  f"{TUNE_SEEDS} tuning seed; the better on {MEASURE_SEEDS} measuring seeds. "
                                  "DiLoCo's outer grid (plan outer): its settings on the tuning seed to "
                                  f"{SH_STOP} only",
            "assumptions": f"SGD needs {SGD_EPOCHS_TO_TARGET} epochs to 0.87 (x r^-0.16 with r reuses), the rates "
                           "not kept run to the cap; 2-rank runs cost the measured on_load's per epoch, scaled "
                           f"along the single-process line by steps per fresh batch; MobileNetV3-Small {MOB_STEP_S} "
                           f"s per step of {MOB_BATCH}, evaluation {MOB_FACTOR}x the SmallCNN's per image; GPT-2 "
                           "tiny one SmallCNN step per step and one test image per block; every launch pays the "
                           "measured fixed cost (an upper bound: a multirun's jobs share one interpreter)",
            "evaluation": f"eval.subset={NEW_SUBSET} during training, the whole {TEST} at the end"},
}

if __name__ == "__main__":
    sys.exit(main())
