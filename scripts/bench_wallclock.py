"""`make bench`, part 2: wall-clock time to target on the real pipeline slowed to R step-times per
batch, the best echo setting against the best plain SGD, each at its own learning rate.

1. The settings (``pick_rates``): those given (``--sgd-lr 0.05 --p 0.25 --p-lr 0.025``) first; then the
   committed speed-up table (``--rates-csv results/figures/speedup.csv``, from ``make fig-speedup``:
   each reuse level at its best learning rate, by the verdict table's rules): plain SGD's rate, and
   the echo level with the least mean simulated time to target among those where every seed reached
   it (those runs ran on a simulated loader at R = 4), with its rate; a rate the table lacks (no
   table, another SCALE's, a level not in it), from a short pilot of the advisor's (``pilot_rates``:
   successive halving over 3 rates on the simulated clock at R, seed 0, within ``--pilot-fraction``
   of the workload's budget; its runs are kept in ``--out``/pilot and found again). p, when neither
   given nor in the table, is 1/R. ``--no-pilot``: exit 2 instead of the pilot.
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

Usage: python scripts/bench_wallclock.py [--rates-csv CSV] [--R 4] [--seeds 0 1 2] [-- echo-run overrides]
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
from typing import Optional

from runner import config, runs, summary
from runner.errors import ConfigError
from runner.metrics import read_jsonl
from runner.report.stats import over_seeds, paired_ratio
from runner.schema import target_text

ROOT = Path(__file__).resolve().parent.parent

QUIET = ("logger.progress=false", "train.threads=1")


def rates_from_csv(path) -> dict:
    """What a speed-up table (``make fig-speedup``'s speedup.csv: one row per reuse level 1/p at its best
    learning rate, with the mean simulated time to target over seeds, NaN when a seed missed it) says:
    {sgd_lr, best: (p, lr) of the echo level with the least mean time to target, by_reuse {1/p: (lr,
    sim_s)}, why: what it lacks}. Only rows of plain SGD (reuse 1) and constant p count."""
    import pandas as pd

    found = {"sgd_lr": None, "best": None, "by_reuse": {}, "why": []}
    path = Path(path)
    if not path.is_file():
        found["why"].append(f"there is no {path}")
        return found
    try:
        df = pd.read_csv(path)
    except (ValueError, OSError) as e:  # pandas' ParserError and EmptyDataError are ValueErrors
        found["why"].append(f"{path} is not a readable CSV ({' '.join(str(e).split())})")
        return found
    need = {"reuse", "method", "lr", "sim_s"} - set(df.columns)
    if need:
        found["why"].append(f"{path} has no column {', '.join(sorted(need))}")
        return found
    method = df["method"].fillna("").astype(str)
    df = df[df["lr"].map(_finite) & df["reuse"].map(_finite) & (method.eq("sgd") | method.str.startswith("constant("))]
    sgd = df[df["reuse"] == 1]
    if len(sgd):
        found["sgd_lr"] = float(sgd["lr"].iloc[0])
    else:
        found["why"].append(f"{path} has no row of plain SGD (reuse 1) with a learning rate")
    echo = df[df["reuse"] > 1]
    found["by_reuse"] = {float(r.reuse): (float(r.lr), float(r.sim_s)) for r in echo.itertuples()}
    reached = echo[echo["sim_s"].map(_finite)]
    if len(reached):
        best = reached.loc[reached["sim_s"].idxmin()]
        found["best"] = (1.0 / float(best["reuse"]), float(best["lr"]))
    else:
        found["why"].append(f"{path} has no echo level (constant p) whose every seed reached the target")
    return found


def _finite(v) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def pilot_rates(workload: list, R: float, levels: list, out: Path, fraction: float, log=print) -> dict:
    """{level: its best learning rate} by the advisor's pilot (``runner.advise.grid``): the workload on
    the simulated clock at loader ratio R (``hardware=ratio``), seed 0, each run stopping at the target
    within ``fraction`` of the workload's budget; successive halving over 3 rates x2 apart around the
    workload's rate (the rule is ``runner.advise.grid``'s docstring). Its runs are kept in ``out`` and
    found again by the next call."""
    from runner.advise import grid as G
    from runner.advise import levels as L

    base = [*[o for o in workload if not o.startswith("target.stop=")], *QUIET]
    G.check_overrides(base)
    cfg = G.compose(base)
    G.check_target(cfg)
    col = G.column(base, ["hardware=ratio", f"hardware.ratio={R:g}"], R, fraction, evals=10)
    lvls = [L.parse(x) for x in levels]
    pilot = G.Pilot(base, [col], lvls, [0], out, log=log, meta={"target": {"mode": cfg.target.mode}},
                    rates=G.rates_around(float(cfg.optim.lr), G.RATES))
    log(f"bench_wallclock: a short pilot for the learning rate of {', '.join(levels)}: {pilot.total()} runs "
        f"({pilot.total() - pilot.missing()} found done in {out}), each to the target or {col['sim_s']:.4g} simulated "
        f"seconds ({fraction:g} of the workload's budget) at R = {R:g}")
    pilot.run()
    return {lv.name: pilot.trials[f"{R:.6g}|{lv.name}"]["chosen"] for lv in lvls}


def pick_rates(csv, given: dict, R: float, workload: list, out: Path, fraction: Optional[float],
               log=print) -> dict:
    """The learning rates and echo level to compare: {sgd_lr, p, p_lr, source {key: where from}}.
    ``given`` (--sgd-lr, --p, --p-lr) first; then the committed speed-up table ``csv`` (the best echo level
    by its mean time to target, or the row of the given --p); what it lacks, from a short pilot
    (``pilot_rates``; ``fraction`` None: no pilot). p itself, when neither given nor in the table, is 1/R
    (echoing enough to fill the wait for data). ConfigError when a rate has no source."""
    got = {"sgd_lr": None, "p": None, "p_lr": None, "source": {}}
    table = rates_from_csv(csv) if csv else {"sgd_lr": None, "best": None, "by_reuse": {}, "why": ["no --rates-csv"]}
    where = str(csv)
    for k in ("sgd_lr", "p", "p_lr"):
        if given.get(k) is not None:
            got[k], got["source"][k] = float(given[k]), "given"
    if got["sgd_lr"] is None and table["sgd_lr"] is not None:
        got["sgd_lr"], got["source"]["sgd_lr"] = table["sgd_lr"], where
    if got["p"] is None and table["best"] is not None:
        got["p"], got["source"]["p"] = table["best"][0], where + " (the least mean time to target)"
    if got["p"] is None:
        got["p"], got["source"]["p"] = 1.0 / R, "1/R"
    row = next((v for reuse, v in table["by_reuse"].items() if math.isclose(reuse, 1.0 / got["p"])), None)
    if got["p_lr"] is None and row is not None:
        got["p_lr"], got["source"]["p_lr"] = row[0], where
    lacking = {k: lv for k, lv in (("sgd_lr", "none"), ("p_lr", f"p={got['p']:g}")) if got[k] is None}
    if not lacking:
        return got
    it = "them" if len(lacking) > 1 else "it"
    what = " and ".join(("plain SGD's learning rate" if k == "sgd_lr" else f"the learning rate of p = {got['p']:g}")
                        for k in lacking)
    said = "; ".join(table["why"]) or f"{csv} has no row for p = {got['p']:g}"
    if fraction is None:
        raise ConfigError(f"{what}: not given, and not in the speed-up table ({said}); --no-pilot forbids the short "
                          f"pilot that would find {it}. Give {it} (--sgd-lr, --p, --p-lr), run `make fig-speedup` to "
                          "write the table, or drop --no-pilot.")
    log(f"bench_wallclock: {what} not in the speed-up table ({said}): finding {it} with a short pilot")
    try:
        best = pilot_rates(workload, R, list(lacking.values()), out / "pilot", fraction, log)
    except ConfigError as e:
        raise ConfigError(f"{what}: not given, not in the speed-up table ({said}), and the short pilot that would "
                          f"find {it} cannot run: {e} Give {it} (--sgd-lr, --p, --p-lr) or run `make fig-speedup` to "
                          "write the table.") from None
    for k, lv in lacking.items():
        got[k], got["source"][k] = best[lv], f"pilot ({out / 'pilot'})"
    return got


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
    ap.add_argument("--rates-csv", default=None, metavar="CSV",
                    help="the speed-up table with each level's best rate (results/figures/speedup.csv, committed)")
    ap.add_argument("--sgd-lr", type=float, help="plain SGD's learning rate (instead of the table's)")
    ap.add_argument("--p", type=float, help="the echo level: constant p (default: the table's best, else 1/R)")
    ap.add_argument("--p-lr", type=float, help="its learning rate (instead of the table's)")
    ap.add_argument("--pilot-fraction", type=float, default=0.5, metavar="F",
                    help="a rate the table lacks: a short pilot, each run within F of the workload's budget "
                         "(default: %(default)s)")
    ap.add_argument("--no-pilot", action="store_true", help="fail (exit 2) instead of running the short pilot")
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
        workload = [*a.overrides, "target.stop=true"]
        pick = pick_rates(a.rates_csv, {"sgd_lr": a.sgd_lr, "p": a.p, "p_lr": a.p_lr}, a.R, workload, out,
                          None if a.no_pilot else a.pilot_fraction)
        cfg = config.compose([*workload, *QUIET])
        B, t = cfg.data.batch_size, cfg.target
        if t.value is None:
            raise ConfigError("the workload has no target (target.value=...): wall-clock time to target needs one.")
        print(f"bench_wallclock: SGD at lr {pick['sgd_lr']:g}; echo at p = {pick['p']:g} (1/p = {1 / pick['p']:g}), "
              f"lr {pick['p_lr']:g}; target {target_text(t)} (from: "
              + "; ".join(f"{k} {v}" for k, v in pick["source"].items()) + ")", flush=True)
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
    print(f"\nWall-clock time to {target_text(t)}, pipeline at R = {a.R:g} "
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
