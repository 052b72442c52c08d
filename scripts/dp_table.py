"""The data-parallel communication table (README, issue 4) from finished runs; never trains.

One row per method (echoing + ``comm`` strategy), the mean over its seeds of the final record:
example loads (all ranks), gradient steps per rank, communication rounds and megabytes per rank, test
accuracy (min-max over seeds), ``sim_s`` and the part of it that the clock charged to communication
(rounds x latency + bytes / bandwidth of the run's hardware profile), and the example loads and
``sim_s`` at the first record that reached the data set's target. Usage:
python scripts/dp_table.py DIR... (run directories or sweep directories above them)
"""
from __future__ import annotations

import statistics
import sys

from runner.report import find_runs, group


def comm_s(run) -> float:
    h, last = run.config["hardware"], run.records[-1]
    bw = h.get("comm_bandwidth_Bps")
    return last["comm_rounds"] * h.get("comm_latency_s", 0.0) + (last["comm_bytes"] / bw if bw else 0.0)


def to_target(run, key: str):
    """A clock at the first record that reached the run's target (None if none did)."""
    reached = ((run.summary or {}).get("target") or {}).get("reached")
    return reached.get(key) if reached else None


def rows(runs) -> list:
    out = []
    for (method,), rs in group(runs, "method").items():
        last = [r.records[-1] for r in rs]
        mean = lambda k: statistics.fmean(x[k] for x in last)
        acc = [x["test_acc"] for x in last]
        sim = [x["sim_s"] for x in last if x.get("sim_s") is not None]
        out.append({"method": method, "seeds": len(rs), "ranks": last[0]["world_size"],
                    "example_loads": mean("example_loads"), "steps": mean("step"), "rounds": mean("comm_rounds"),
                    "mb": mean("comm_bytes") / 1e6, "acc": statistics.fmean(acc), "acc_lo": min(acc),
                    "acc_hi": max(acc), "sim_s": statistics.fmean(sim) if sim else None,
                    "comm_s": statistics.fmean(comm_s(r) for r in rs),
                    "target": _mean_or_none([to_target(r, "sim_s") for r in rs]),
                    "target_loads": _mean_or_none([to_target(r, "example_loads") for r in rs]),
                    "target_name": "{metric} >= {value}".format(**rs[0].summary["target"]) if rs[0].summary else "-"})
    return out


def _mean_or_none(xs: list):
    return statistics.fmean(xs) if xs and all(x is not None for x in xs) else None


def markdown(rs: list) -> str:
    lines = ["| method | ranks | seeds | example loads | steps/rank | comm rounds | MB sent/rank | test acc (min-max) "
             "| sim_s | of which comm | loads to target | sim_s to target |", "|" + "---|" * 12]
    for r in rs:
        sim = f"{r['sim_s']:.2f}" if r["sim_s"] is not None else "-"
        lines.append(f"| {r['method']} | {r['ranks']} | {r['seeds']} | {r['example_loads']:.0f} | {r['steps']:.0f} "
                     f"| {r['rounds']:.0f} | {r['mb']:.1f} | {r['acc']:.4f} ({r['acc_lo']:.4f}-{r['acc_hi']:.4f}) "
                     f"| {sim} | {r['comm_s']:.3f} | {_fmt(r['target_loads'], '.0f')} | {_fmt(r['target'], '.2f')} |")
    if rs:
        lines.append(f"\nTarget: {rs[0]['target_name']}; means over seeds (a column is '-' when a seed missed it).")
    return "\n".join(lines)


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    runs = [r for r in find_runs(args) if r.status == "complete"]
    print(markdown(rows(runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
