"""``echo-report``: figures and tables from run directories (never trains).

    echo-report runs        DIR...                       # what was found: method, lr, seed, status, final metric
    echo-report curves      DIR... --x step wall_s       # mean over seeds with a min-max band, per method
    echo-report best-lr     DIR...                       # best lr per method (Markdown + CSV) and its figure
    echo-report claim       DIR...                       # loads/steps/sim_s to target vs reuses per fresh batch
    echo-report stats       DIR... --baseline sgd        # 95% intervals over seeds, paired speed-up vs a baseline
    echo-report clock-check DIR...                       # simulated (sim_s) against measured (wall_s) time
    echo-report verdict     SPEC.yaml DIR...             # the verdict table of a spec of claims
    echo-report dp          DIR...                       # the data-parallel communication table

A DIR is a run directory or any directory above run directories (a multirun's sweep dir, results/):
every directory below it holding ``.hydra/config.yaml`` and ``metrics.jsonl`` is one run. Runs are
grouped by data set, model, budget, method (``summary.json``'s method), world size (data-parallel
groups read ``cosine+on_load ×2``) and learning rate; the seeds of a group make its mean and interval.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from . import plots, tables
from .plots import XS, ext, save
from .runs import ReportError, default_metric, find_runs, finite


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="echo-report", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p, out: Optional[str], metric: bool = True, ylim: bool = True):
        p.add_argument("dirs", nargs="+", help="run directories or directories above them")
        if metric:
            p.add_argument("--metric", help="test_acc | test_ppl | test_loss | train_loss (default: by task)")
        if ylim:
            p.add_argument("--ylim", nargs=2, type=float, metavar=("LO", "HI"), help="the metric axis' range")
        if out:
            p.add_argument("--out", default=out, help="output path without extension (default: %(default)s)")
        return p

    common(sub.add_parser("runs", help="list the runs found"), None, ylim=False)
    p = common(sub.add_parser("curves", help="metric vs clocks, one line per method"), "results/figures/curves")
    p.add_argument("--x", nargs="+", default=["example_loads", "step", "wall_s", "sim_s"], choices=list(XS))
    p = common(sub.add_parser("best-lr", help="best learning rate per method: table and figure"),
               "results/figures/best_lr")
    p.add_argument("--x", default="example_loads", choices=list(XS))
    p = common(sub.add_parser("claim", help="loads/steps/sim_s to target vs reuses per fresh batch"),
               "results/figures/claim")
    p.add_argument("--target", type=float, help="the target value (default: the runs' target.value)")
    p = common(sub.add_parser("stats", help="intervals over seeds and the paired speed-up vs a baseline",
                              description="Per (data set, model, world size, method, lr): the final metric "
                              "with a t and a bootstrap (BCa) interval, example loads / steps / wall_s / sim_s "
                              "to target with t intervals, and at each method's best lr (best mean metric at "
                              "equal example loads) the paired speed-up against the baseline at its own best "
                              "lr, matched by seed. Writes OUT.md and OUT.csv."), "results/figures/stats", ylim=False)
    p.add_argument("--baseline", nargs="+", default=["sgd"], metavar="METHOD",
                   help="the baseline method; with several, the first that ran in a group (e.g. sgd sgd+allreduce)")
    p.add_argument("--target", type=float, help="the target value (default: the runs' target.value)")
    p.add_argument("--confidence", type=float, default=0.95, help="interval coverage (default: %(default)s)")
    p.add_argument("--tuning-seeds", type=_seeds, metavar="S,S",
                   help="choose each method's best lr on these seeds only (default: every seed)")
    p.add_argument("--measuring-seeds", type=_seeds, metavar="S,S",
                   help="compare with the baseline on these seeds only, at the rate the tuning seeds chose "
                        "(default: every seed); give seeds apart from --tuning-seeds")
    p = common(sub.add_parser("clock-check", help="simulated (sim_s) against measured (wall_s) training time",
                              description="For runs that record both sim_s and wall_s (a hardware profile, "
                              "typically hardware=measured): the relative error (sim_s - wall_s) / wall_s at the "
                              "end of each run and at each record; OUT.md, OUT.csv and a scatter OUT.png/pdf "
                              "with y = x and a ±15% band."),
               "results/figures/clock_check", metric=False, ylim=False)
    p.add_argument("--hardware", nargs="+", metavar="NAME", help="only runs under these hardware profiles")
    p = sub.add_parser("verdict", help="the verdict table of a YAML spec of claims",
                       description=_verdict_doc(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec", help="the YAML spec of claims")
    common(p, "results/figures/verdict", metric=False, ylim=False)
    p = common(sub.add_parser("dp", help="the data-parallel communication table (Markdown + CSV)"),
               "results/figures/dp_table", ylim=False)
    return ap


def _seeds(text: str) -> list:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of seeds, e.g. 0,1") from None


def _verdict_doc() -> str:
    from . import verdict

    return verdict.__doc__


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        written = run(args)
    except ReportError as e:
        print(f"echo-report: error: {e}", file=sys.stderr)
        return 2
    for w in written:
        print(f"echo-report: wrote {w}")
    return 0


def run(args) -> list:
    if args.cmd == "verdict":
        from .verdict import write_verdict

        written, md, missing = write_verdict(args.spec, args.dirs, Path(args.out))
        print(md)
        for cid, fig in missing:
            print(f"echo-report: note: the figure of claim {cid}, {fig}, does not exist (yet)")
        return written
    runs = find_runs(args.dirs)
    out = Path(args.out) if getattr(args, "out", None) else None
    if args.cmd == "clock-check":
        if args.hardware:
            runs = [r for r in runs if r.hardware in args.hardware]
            if not runs:
                raise ReportError(f"no run below {', '.join(args.dirs)} ran under hardware {', '.join(args.hardware)}.")
        df, skipped = tables.clock_frame(runs)
        for r in skipped:
            print(f"echo-report: skipped {r.dir}: no sim_s (no hardware profile)")
        written = tables.write_clock_check(df, skipped, out)
        print(ext(out, ".md").read_text())
        return written + save(*plots.clock_check_fig(df, out))
    metric = args.metric or default_metric(runs)
    if not any(finite(r.get(metric)) for run in runs for r in run.records):
        raise ReportError(f"no record of these runs holds {metric!r}; choose --metric test_acc "
                          "(classification), test_ppl (language), test_loss or train_loss.")
    if args.cmd == "runs":
        print(tables.runs_frame(runs, metric).to_string(index=False))
        return []
    written, figs = [], []
    if args.cmd == "curves":
        figs = plots.curves_figs(runs, args.x, metric, out, args.ylim)
        table = tables.method_table(runs, metric)
        if table:
            out.parent.mkdir(parents=True, exist_ok=True)
            ext(out, ".md").write_text(table)
            written.append(ext(out, ".md"))
            print(table)
    elif args.cmd == "best-lr":
        rows = tables.lr_table(runs, metric)
        written = tables.write_best_lr(rows, out)
        figs = plots.best_figs(runs, rows, args.x, metric, out, args.ylim)
        print(ext(out, ".md").read_text())
    elif args.cmd == "claim":
        figs = plots.claim_figs(runs, metric, args.target, out)
        written = [ext(stem, ".csv") for _, stem in figs]
    elif args.cmd == "stats":
        if not 0 < args.confidence < 1:
            raise ReportError(f"--confidence {args.confidence} is not between 0 and 1 (e.g. 0.95).")
        both = set(args.tuning_seeds or []) & set(args.measuring_seeds or [])
        if both:
            raise ReportError(f"seed(s) {sorted(both)} are both tuning and measuring seeds: the seeds that choose a "
                              "rate must not also measure its effect. Give them apart (e.g. --tuning-seeds 0,1 "
                              "--measuring-seeds 2,3,4).")
        written = tables.write_stats(runs, out, metric, args.baseline, args.target, args.confidence,
                                     args.tuning_seeds, args.measuring_seeds)
        print(ext(out, ".md").read_text())
    elif args.cmd == "dp":
        df = tables.dp_frame(runs, metric)
        out.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(ext(out, ".csv"), index=False)
        md = tables.dp_markdown(df)
        ext(out, ".md").write_text(md)
        print(md)
        written = [ext(out, ".md"), ext(out, ".csv")]
    for fig, stem in figs:
        written += save(fig, stem)
    return written


if __name__ == "__main__":
    sys.exit(main())
