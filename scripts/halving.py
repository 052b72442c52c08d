"""Successive halving for the figures' sweeps (``make figures``): which settings go on to the next
stage, read from the runs' records. Reads run directories, never trains; prints overrides for the
next ``echo-run -m`` command on stdout.

    python scripts/halving.py DIR --method LABEL --seeds 0 --keep 2          # optim.lr=0.05,0.1
    python scripts/halving.py DIR --method LABEL --seeds 0,1 --keep 1        # optim.lr=0.05
    python scripts/halving.py DIR --method LABEL --seeds 0,1 --keep 1 \\
        --key comm.outer_lr comm.outer_momentum                              # comm.outer_lr=0.7 comm.outer_momentum=0.9

Each setting (a value of ``--key``, by default the learning rate) is scored by the mean over
``--seeds`` of the metric at equal example loads: the largest load count that every run of the
method reached, whether it finished or stopped at a stage (``budget.stop_at``). Runs that stop at
their target (``target.stop``) are scored by their mean loads to the target instead, a miss counting
as infinite. A setting where a seed diverged, or has no run yet, ranks last. The ``--keep`` best
are printed; with ``--complete``, only settings whose runs all finished can be chosen (the rule the
figures and the verdict use for the final choice: ``runner.report.stats.best_lr_at_equal_loads``).

Exit status 2 with a one-paragraph message when the directory holds no run of the method at those
seeds (run the previous stage first).
"""
from __future__ import annotations

import argparse
import math
import sys

import numpy as np

from runner.report.runs import ReportError, default_metric, find_runs, finite, last_x, mode_of, to_target, value_at


def _fmt(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def scores(runs, keys: list, metric: str, complete: bool) -> dict:
    """{setting (a tuple of the keys' values): score, larger is better} for the given runs."""
    groups: dict = {}
    for r in runs:
        groups.setdefault(tuple(r.get(k) for k in keys), []).append(r)
    mode = mode_of(metric)
    sign = 1.0 if mode == "max" else -1.0
    out = {}
    target = (runs[0].config.get("target") or {})
    if target.get("stop") and target.get("value") is not None:
        def loads(r) -> float:
            hit = to_target(r, target.get("metric", metric), target["value"], target.get("mode", mode))
            return float(hit["example_loads"]) if hit else math.inf
        for s, rs in groups.items():
            ok = all(r.status == "complete" for r in rs) if complete else all(r.status != "incomplete" for r in rs)
            out[s] = -float(np.mean([loads(r) for r in rs])) if ok else -math.inf
        return out
    usable = {s: rs for s, rs in groups.items()
              if all(r.status == "complete" if complete else r.status in ("complete", "stopped") for r in rs)}
    ends = [last_x(r, "example_loads", metric) for rs in usable.values() for r in rs]
    at = min((e for e in ends if finite(e)), default=math.nan)
    for s, rs in groups.items():
        v = [value_at(r, "example_loads", metric, at) for r in rs] if s in usable and finite(at) else [math.nan]
        out[s] = sign * float(np.mean(v)) if all(finite(x) for x in v) else -math.inf
    return out


def choose(runs, method: str, seeds: list, keep: int, keys: list, metric=None, complete=False) -> list:
    """The ``keep`` best settings of ``method`` on ``seeds`` (see the module's doc)."""
    mine = [r for r in runs if (r.label == method or r.method == method) and r.seed in seeds]
    if not mine:
        labels = ", ".join(sorted({r.label for r in runs})) or "none"
        raise ReportError(f"no run of {method!r} with seed {', '.join(map(str, seeds))} below the directories "
                          f"given (methods there: {labels}). Run the previous stage of the sweep first, or "
                          "name the method as `echo-report runs DIR` lists it.")
    sc = scores(mine, keys, metric or default_metric(mine), complete)
    ranked = sorted(sc, key=lambda s: (-sc[s], s))
    best = [s for s in ranked if sc[s] > -math.inf][:keep]
    if not best:
        raise ReportError(f"every setting of {method!r} on seeds {seeds} diverged or has not run to this stage: "
                          "nothing to continue. Look at the runs (echo-report runs DIR) and widen or move the grid.")
    return best


def overrides(best: list, keys: list) -> str:
    if len(keys) == 1:
        return f"{keys[0]}=" + ",".join(_fmt(s[0]) for s in sorted(best))
    if len(best) != 1:
        raise ReportError("several keys at once are printed for one setting only: give --keep 1.")
    return " ".join(f"{k}={_fmt(v)}" for k, v in zip(keys, best[0]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirs", nargs="+", help="run directories or directories above them")
    ap.add_argument("--method", required=True, help="the method's label (echo-report runs DIR lists them)")
    ap.add_argument("--seeds", required=True, help="comma-separated seeds to score on (the tuning seeds)")
    ap.add_argument("--keep", type=int, default=1, help="how many settings go on (default 1)")
    ap.add_argument("--key", nargs="+", default=["optim.lr"], help="the swept config keys (default optim.lr)")
    ap.add_argument("--metric", default=None, help="test_acc (default) or test_ppl for language")
    ap.add_argument("--complete", action="store_true", help="choose among finished runs only")
    a = ap.parse_args(argv)
    try:
        seeds = [int(s) for s in a.seeds.split(",")]
        best = choose(find_runs(a.dirs), a.method, seeds, a.keep, a.key, a.metric, a.complete)
        print(overrides(best, a.key))
    except (ReportError, ValueError) as e:
        print(f"halving: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
