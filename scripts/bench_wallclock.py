"""`make bench`, part 2: wall-clock time to target on the real pipeline slowed to R step-times per
batch, the best echo setting against the best plain SGD, each at its own learning rate.

1. The settings come from the speed-up figure's runs (``--from results/small/speedup``), by the
   verdict table's rules: each reuse level's learning rate is its best mean test accuracy at equal
   example loads (``runner.report.stats.best_lr_at_equal_loads``); the best echo level is the one
   with the least mean simulated time to target (those runs ran on a simulated loader at R = 4),
   among the levels where every seed reached it. Or give them: ``--sgd-lr 0.05 --p 0.25 --p-lr 0.025``.
2. The step time of this machine now: echo-run's own wall time per training step of plain SGD on
   the workload (``--calib-steps`` steps, median of ``--calib-runs`` runs, evaluation off).
3. The pipeline is throttled to ``pipeline.examples_per_s = batch / (R * step time)``: each fresh
   batch takes R step-times to arrive (a slow disk or decoder); echo steps do not wait.
4. For each seed, in turn (so that a change in the machine's load hits every method alike): plain
   SGD, the best constant p, and adaptive echoing (echo a batch while the next is not ready; at the
   best level's rate), each to the target (``target.stop=true``) through ``runner.runs.run_once``.
   Adaptive decides from the real pipeline (``echo.ready_from=pipeline``); each run also carries the
   simulated clock of this loader and step time (``hardware=ratio``), so ``sim_s`` is the clock's
   prediction of ``wall_s``, and the table reports its error (the clock check).

Writes ``--out``/wallclock.json (default results/bench/) and prints a table: wall-clock seconds to
target per method (mean and 95 % t interval over seeds), the paired speed-up SGD / method (geometric
mean over seeds, t interval on the log ratios), steps per fresh batch, the time SGD waited for data,
and the R the runs really saw. The physical limit of the speed-up is R (every step of SGD waits R-1
step-times for data; echoing can fill them, but an echo step is worth at most a fresh one).

Usage: python scripts/bench_wallclock.py [--from DIR] [--R 4] [--seeds 0 1 2] [-- echo-run overrides]
The overrides are the workload (the speed-up figure's, less its hardware profile); the Makefile
passes them.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from runner import config, runs, summary
from runner.errors import ConfigError
from runner.metrics import read_jsonl
from runner.report.runs import find_runs, group, target_of
from runner.report.stats import best_lr_at_equal_loads, over_seeds, paired_ratio, to_target_estimate

ROOT = Path(__file__).resolve().parent.parent

QUIET = ("logger.progress=false", "train.threads=1")


def choose(claim_dir: str) -> dict:
    """{sgd_lr, p, p_lr, by_level}: the speed-up figure's best rate per level and best level."""
    rs = [r for r in find_runs([claim_dir]) if r.reuse is not None]
    tgt = target_of(rs)
    levels = {}
    for (reuse,), lr_runs in group(rs, "reuse").items():
        b = best_lr_at_equal_loads(lr_runs, "test_acc", "max")
        if b is None:
            continue
        at_best = [r for r in lr_runs if r.lr == b["lr"]]
        sim = to_target_estimate(at_best, "sim_s", tgt)
        levels[reuse] = {"lr": b["lr"], "sim_s_to_target": sim.value if sim.has_value else None,
                         "note": sim.note}
    if 1.0 not in levels:
        raise ConfigError(f"no plain SGD (1/p = 1) with an eligible learning rate below {claim_dir}: run "
                          "`make fig-speedup` first, or give --sgd-lr, --p and --p-lr.")
    echo = {k: v for k, v in levels.items() if k > 1 and v["sim_s_to_target"] is not None}
    if not echo:
        raise ConfigError(f"no echo level below {claim_dir} reached the target with every seed: give --p and --p-lr.")
    best = min(echo, key=lambda k: echo[k]["sim_s_to_target"])
    return {"sgd_lr": levels[1.0]["lr"], "p": 1.0 / best, "p_lr": echo[best]["lr"], "by_level": levels}


def run_dir(out: Path, name: str) -> Path:
    return out / "runs" / name


def one(overrides: list, d: Path) -> list:
    cfg = config.compose([*overrides, *QUIET])
    runs.run_once(cfg, d)
    return read_jsonl(d / "metrics.jsonl")


def step_time(workload: list, out: Path, steps: int, repeats: int) -> list:
    """Seconds per training step of plain SGD on this machine now (evaluation off)."""
    got = []
    for k in range(repeats):
        d = run_dir(out, f"calib-{time.strftime('%Y%m%d-%H%M%S')}-{k}")
        recs = one([*workload, "hardware=none", "schedule=none", f"budget.steps={steps}", "budget.example_loads=null",
                    "eval.every_loads=null", "checkpoint.enabled=false", "target.stop=false"], d)
        got.append(recs[-1]["wall_s"] / recs[-1]["step"])
    return got


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--from", dest="claim_dir", default=None, help="the speed-up figure's runs (results/small/speedup)")
    ap.add_argument("--sgd-lr", type=float, help="plain SGD's learning rate (instead of --from)")
    ap.add_argument("--p", type=float, help="the echo level: constant p (instead of --from)")
    ap.add_argument("--p-lr", type=float, help="its learning rate (instead of --from)")
    ap.add_argument("--R", type=float, default=4.0, help="step-times per fresh batch (default: %(default)s)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--no-adaptive", action="store_true", help="leave adaptive echoing out")
    ap.add_argument("--calib-steps", type=int, default=200)
    ap.add_argument("--calib-runs", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "results" / "bench"))
    ap.add_argument("overrides", nargs="*", help="echo-run overrides: the workload")
    a = ap.parse_args(argv)
    out = Path(a.out)
    try:
        if a.claim_dir:
            pick = choose(a.claim_dir)
        elif None not in (a.sgd_lr, a.p, a.p_lr):
            pick = {"sgd_lr": a.sgd_lr, "p": a.p, "p_lr": a.p_lr, "by_level": None}
        else:
            raise ConfigError("give --from DIR (the speed-up figure's runs) or all of --sgd-lr, --p and --p-lr.")
        for k in ("sgd_lr", "p", "p_lr"):
            v = getattr(a, k)
            if v is not None:
                pick[k] = v
        workload = [*a.overrides, "target.stop=true"]
        cfg = config.compose([*workload, *QUIET])
        B, t = cfg.data.batch_size, cfg.target
        if t.value is None:
            raise ConfigError("the workload has no target (target.value=...): wall-clock time to target needs one.")
        print(f"bench_wallclock: SGD at lr {pick['sgd_lr']:g}; echo at p = {pick['p']:g} (1/p = {1 / pick['p']:g}), "
              f"lr {pick['p_lr']:g}; target {t.metric} {'>=' if t.mode == 'max' else '<='} {t.value:g}", flush=True)
        steps = step_time(workload, out, a.calib_steps, a.calib_runs)
        step_s = statistics.median(steps)
        eps = B / (a.R * step_s)
        print(f"bench_wallclock: step time {step_s * 1e3:.1f} ms (runs: {', '.join(f'{s * 1e3:.1f}' for s in steps)}); "
              f"pipeline throttled to {eps:.1f} examples/s = R {a.R:g} step-times per batch of {B}", flush=True)
        slow = [f"pipeline.examples_per_s={eps:.3f}", "hardware=ratio", f"hardware.ratio={a.R:g}",
                f"hardware.step_s={step_s:.6g}", "echo.ready_from=pipeline"]
        methods = {"sgd": ["schedule=none", f"optim.lr={pick['sgd_lr']}"],
                   f"constant(p={pick['p']:g})": ["schedule=constant", f"schedule.p={pick['p']}", f"optim.lr={pick['p_lr']}"]}
        if not a.no_adaptive:
            methods["adaptive"] = ["echo=adaptive", f"optim.lr={pick['p_lr']}"]
        per: dict = {m: {} for m in methods}
        for seed in a.seeds:
            for m, ov in methods.items():
                name = f"{m}-seed{seed}-eps{eps:.1f}".replace("(", "").replace(")", "").replace("=", "")
                recs = one([*workload, *ov, *slow, f"seed={seed}"], run_dir(out, name))
                hit = summary.time_to_target(recs, t.metric, t.value, t.mode)
                last = recs[-1]
                per[m][seed] = {"wall_s_to_target": hit and hit["wall_s"], "loads_to_target": hit and hit["example_loads"],
                                "steps_to_target": hit and hit["step"], "steps": last["step"],
                                "steps_per_fresh_batch": last["step"] / max(1.0, last["example_loads"] / B),
                                "idle_s": last["real_idle_s"], "wall_s": last["wall_s"], "sim_s": last["sim_s"],
                                "clock_error": (last["sim_s"] - last["wall_s"]) / last["wall_s"],
                                "dir": str(run_dir(out, name))}
                print(f"  seed {seed} {m:>18}: wall_s to target "
                      f"{'not reached' if not hit else round(hit['wall_s'], 2)}, {last['step']} steps, "
                      f"{per[m][seed]['steps_per_fresh_batch']:.2f} steps per fresh batch, waited {last['real_idle_s']:.2f} s "
                      f"(simulated: {last['idle_s']:.2f} s)",
                      flush=True)
    except ConfigError as e:
        print(f"bench_wallclock: error: {e}", file=sys.stderr)
        return 2
    wall = {m: {s: v["wall_s_to_target"] for s, v in d.items()} for m, d in per.items()}
    res = {"R": a.R, "step_s": step_s, "step_s_runs": steps, "examples_per_s": eps, "batch_size": B,
           "target": {"metric": t.metric, "value": t.value, "mode": t.mode}, "seeds": a.seeds, "choice": pick,
           "workload": a.overrides, "runs": per, "methods": {}}
    rows = []
    for m in methods:
        e = over_seeds(wall[m])
        s = paired_ratio(wall["sgd"], wall[m], base_name="sgd", method_name=m) if m != "sgd" else None
        eff = statistics.mean(v["steps_per_fresh_batch"] for v in per[m].values())
        res["methods"][m] = {"wall_s_to_target": e.value, "lo": e.lo, "hi": e.hi, "note": e.note,
                             "speedup": s and s.value, "speedup_lo": s and s.lo, "speedup_hi": s and s.hi,
                             "speedup_note": s and s.note, "steps_per_fresh_batch": eff}
        fmt = lambda v: "—" if v is None or not math.isfinite(v) else f"{v:.3g}"  # noqa: E731
        rows.append((m, f"{fmt(e.value)} [{fmt(e.lo)}, {fmt(e.hi)}]" if e.has_value else e.note,
                     "1" if s is None else (f"{fmt(s.value)} [{fmt(s.lo)}, {fmt(s.hi)}]" if s.has_value else s.note),
                     f"{eff:.2f}", f"{statistics.mean(v['idle_s'] for v in per[m].values()):.1f}"))
    errs = [v["clock_error"] for d in per.values() for v in d.values()]
    res["clock_check"] = {"median_error": statistics.median(errs), "max_abs_error": max(map(abs, errs)),
                          "within_15pct": sum(abs(e) <= 0.15 for e in errs), "runs": len(errs)}
    # The R the runs saw: adaptive's steps per fresh batch, else the throttle's.
    res["effective_R"] = res["methods"].get("adaptive", {}).get("steps_per_fresh_batch")
    res["machine"] = {"cpus": os.cpu_count(), "load_avg": os.getloadavg(), "git_revision": summary.git_revision(),
                      **summary.versions(), "platform": platform.platform()}
    res["command"] = "python scripts/bench_wallclock.py " + " ".join(sys.argv[1:] if argv is None else argv)
    out.mkdir(parents=True, exist_ok=True)
    (out / "wallclock.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    print(f"\nWall-clock time to {t.metric} {'>=' if t.mode == 'max' else '<='} {t.value:g}, pipeline at R = {a.R:g} "
          f"step-times per batch ({step_s * 1e3:.1f} ms steps), {len(a.seeds)} seeds; the limit of the speed-up is {a.R:g}:\n")
    print("| method | wall_s to target (95% interval) | speed-up SGD / method (paired) | steps per fresh batch | waited for data (real_idle_s) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    c = res["clock_check"]
    print(f"\nClock check: the simulated clock's sim_s against wall_s at the end of each run: median error "
          f"{c['median_error']:+.1%}, largest {c['max_abs_error']:.1%}, {c['within_15pct']} of {c['runs']} within 15%.")
    print(f"\nwritten to {out / 'wallclock.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
