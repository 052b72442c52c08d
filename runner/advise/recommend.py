"""``echo-advise recommend``: the pilot grid, then the recommendation, kept monotone in R.

Per loader ratio R (ascending), a level's time is the geometric mean over seeds of its simulated
time to the target (a level that missed the target on any seed has none). The recommendation at R:
1. the levels allowed are those that echo at least as much as the recommendation at the previous
   (smaller) R: ``levels.amount`` (expected steps per fresh batch) never goes down as R grows;
2. among them, the fastest; levels within ``tolerance`` of it are ties, won by the least echoing.
Its predicted speed-up over plain SGD is ``runner.report.stats.paired_ratio`` over seeds: the
geometric mean of SGD's time / the level's time, matched by seed, with a 95% t interval on the log
ratios (none with one seed).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence

import pandas as pd
from scipy.stats import gmean as geometric_mean

from ..errors import ConfigError
from ..metrics import write_json
from ..report import finite
from ..report.tables import markdown
from ..schema import target_text
from . import grid as G


def level_times(g: dict, R: float, level: str) -> Dict[int, Optional[float]]:
    """{seed: simulated time to target or None} of one cell of the grid."""
    out = {}
    for s in g["seeds"]:
        c = g["cells"].get(G.Pilot.key(R, level, s))
        out[s] = c["sim_s"] if c and c.get("sim_s") is not None and c.get("sim_s") > 0 else None
    return out


def gmean(vals) -> Optional[float]:
    """scipy's geometric mean; None when a value is missing (a seed missed the target) or not positive."""
    vals = list(vals)
    if not vals or any(v is None or v <= 0 for v in vals):
        return None
    return float(geometric_mean(vals))


def rate(g: dict, R: float, level: str) -> Optional[float]:
    """The learning rate of a level's cells at R: the one its successive halving chose (None while it
    runs), or the workload's in a grid made before levels had their own."""
    t = (g.get("trials") or {}).get(f"{R:.6g}|{level}")
    return t["chosen"] if t else (None if g.get("trials") is not None else g.get("lr"))


def summarise(g: dict) -> Dict[str, Dict[str, dict]]:
    """Per R (as "%.6g") and level: its amount of echoing, times, geometric mean, observed echoing."""
    rows: Dict[str, Dict[str, dict]] = {}
    for col in g["columns"]:
        R = col["R"]
        row = {}
        for lv in g["levels"]:
            name = lv["name"]
            cells = [g["cells"].get(G.Pilot.key(R, name, s)) for s in g["seeds"]]
            have = [c for c in cells if c]
            times = level_times(g, R, name)
            spf = [c["steps_per_fresh"] for c in have if c.get("steps_per_fresh")]
            row[name] = {"amount": have[0]["amount"] if have else None, "times": times, "lr": rate(g, R, name),
                         "time": gmean(times.values()) if len(have) == len(cells) else None,
                         "reached": sum(v is not None for v in times.values()), "seeds": len(cells),
                         "steps_per_fresh": sum(spf) / len(spf) if spf else None}
        rows[f"{R:.6g}"] = row
    return rows


def pick(rows: Dict[str, Dict[str, dict]], order: Sequence[float], tolerance: float) -> Dict[str, dict]:
    """The monotone recommendation (see the module's docstring) for each R in ``order``."""
    out: Dict[str, dict] = {}
    floor = 0.0
    for R in sorted(order):
        row = rows[f"{R:.6g}"]
        timed = {lv: c for lv, c in row.items() if c["time"] is not None and c["amount"] is not None}
        free = _best(timed, tolerance)  # what R alone would recommend
        allowed = {lv: c for lv, c in timed.items() if c["amount"] >= floor * (1 - 1e-9)}
        chosen = _best(allowed, tolerance)
        if chosen is None:
            out[f"{R:.6g}"] = {"level": None, "amount": None, "unconstrained": free, "floor": floor}
            continue
        floor = timed[chosen]["amount"]
        out[f"{R:.6g}"] = {"level": chosen, "amount": floor, "unconstrained": free, "floor": floor,
                           "time": timed[chosen]["time"]}
    return out


def _best(timed: Dict[str, dict], tolerance: float) -> Optional[str]:
    if not timed:
        return None
    best = min(c["time"] for c in timed.values())
    ties = [lv for lv, c in timed.items() if c["time"] <= best * (1 + tolerance)]
    # Least echoing, then fastest, then the level listed first (none before adaptive at R <= 1).
    order = list(timed)
    return min(ties, key=lambda lv: (timed[lv]["amount"], timed[lv]["time"], order.index(lv)))


def speedups(g: dict, rec: Dict[str, dict]) -> None:
    """Adds each recommendation's predicted speed-up over plain SGD (an Estimate as a dict)."""
    from ..report.stats import paired_ratio

    for col in g["columns"]:
        r = rec[f"{col['R']:.6g}"]
        if r["level"] is None:
            r["speedup"] = None
            continue
        e = paired_ratio(level_times(g, col["R"], "none"), level_times(g, col["R"], r["level"]),
                         base_name="none", method_name=r["level"])
        r["speedup"] = {"value": e.value, "lo": e.lo, "hi": e.hi, "n": e.n, "of": e.of, "note": e.note}


def fmt_speedup(s: Optional[dict]) -> str:
    if not s or not finite(s.get("value")):
        return "-"
    if finite(s.get("lo")):
        return f"{s['value']:.2f}x [{s['lo']:.2f}, {s['hi']:.2f}]"
    return f"{s['value']:.2f}x"


def line(g: dict, rec: Dict[str, dict], R: float) -> str:
    """The one line: the level to use at R and the predicted speed-up with its interval."""
    r, goal = rec[f"{R:.6g}"], target_text(g["target"])
    if r["level"] is None:
        return f"advise: at R = {R:.3g} no level reached {goal} on every seed within the pilot's budget."
    s = r["speedup"]
    if finite(s.get("lo")):
        iv = f"95% interval {s['lo']:.2f}-{s['hi']:.2f}x over {s['n']} seeds"
    elif s.get("n", 0) <= 1:
        iv = "one seed, so no interval: give --seeds 0 1 2 for one"
    else:
        iv = f"no interval: {s.get('note')}"
    lr, sgd_lr = rate(g, R, r["level"]), rate(g, R, "none")
    what = (f"plain SGD (no echoing) at lr {lr:g}" if r["level"] == "none" else
            f"{r['level']} ({r['amount']:.2g} steps per fresh batch) at lr {lr:g}")
    base = ("plain SGD (the same lr, --same-rate)" if g.get("same_rate") else
            f"plain SGD at its best lr {sgd_lr:g}")
    return (f"advise: at R = {R:.3g} use {what}: predicted speed-up over {base} {s['value']:.2f}x ({iv}; "
            f"simulated time to {goal}).")


def table(g: dict, rows, rec) -> str:
    t = g["target"]
    names = [lv["name"] for lv in g["levels"]]
    head = ["R", *names, "recommended", "steps per fresh batch", "speed-up vs none [95%]"]
    out = []
    for col in g["columns"]:
        k = f"{col['R']:.6g}"
        row, r = rows[k], rec[k]
        cells = []
        for n in names:
            c = row[n]
            txt = "-" if c["time"] is None else f"{c['time']:.3g}"
            if c["time"] is None and c["reached"]:
                txt = f"- ({c['reached']}/{c['seeds']})"
            cells.append(f"**{txt}**" if n == r["level"] else txt)
        spf = row[r["level"]]["steps_per_fresh"] if r["level"] else None
        out.append([f"{col['R']:.3g}", *cells, r["level"] or "-", "-" if spf is None else f"{spf:.2f}",
                    fmt_speedup(r.get("speedup"))])
    goal = target_text(t)
    return (f"Simulated seconds to {goal}, geometric mean over seeds {g['seeds']} ('-' = missed by a seed within the "
            f"budget; (k/n): reached by k of n seeds); **bold** = recommended.\n\n"
            + markdown(pd.DataFrame(out, columns=head)) + "\n")


def heatmap(g: dict, rows, rec, path: Path) -> list:
    """Time to target relative to plain SGD at the same R (lower is better); text: the speed-up."""
    import numpy as np

    from ..report import pyplot, save, title

    plt = pyplot()
    Rs = [c["R"] for c in g["columns"]]
    names = [lv["name"] for lv in g["levels"]]
    M = np.full((len(names), len(Rs)), np.nan)
    for j, R in enumerate(Rs):
        row = rows[f"{R:.6g}"]
        sgd = row["none"]["time"]
        for i, n in enumerate(names):
            if row[n]["time"] is not None and sgd:
                M[i, j] = row[n]["time"] / sgd
    fig, ax = plt.subplots(figsize=(1.6 * len(Rs) + 3.5, 0.55 * len(names) + 2))
    finite = M[np.isfinite(M)]
    vmax = max(2.0, float(finite.max())) if finite.size else 2.0
    im = ax.imshow(M, cmap="viridis_r", aspect="auto", vmin=min(0.5, float(finite.min()) if finite.size else 0.5),
                   vmax=vmax)
    ax.set_xticks(range(len(Rs)), [f"{R:.3g}" for R in Rs])
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("R: batch load time / step time")
    ax.set_ylabel("echo level")
    for j, R in enumerate(Rs):
        chosen = rec[f"{R:.6g}"]["level"]
        for i, n in enumerate(names):
            v = M[i, j]
            txt = ("-" if not np.isfinite(v) else f"{1 / v:.2f}x") + (" *" if n == chosen else "")
            lr = rows[f"{R:.6g}"][n].get("lr")
            txt += "" if lr is None or g.get("same_rate") else f"\nlr {lr:g}"  # each level's own rate
            ax.text(j, i, txt, ha="center", va="center", fontsize=11,
                    color="white" if not np.isfinite(v) or v > (0.5 + vmax) / 2 else "black",
                    fontweight="bold" if n == chosen else "normal")
    ax.set_facecolor("#888888")
    fig.colorbar(im, ax=ax, label="simulated time to target / plain SGD's")
    t = g["target"]
    ax.set_title(title(g["dataset"], g["model"], f"{g['lr']:g} for every level" if g.get("same_rate", True) else
                       "each level's best of " + ", ".join(f"{x:g}" for x in g["rates"]) + " (in its cells)",
                        f"speed-up over plain SGD to {t['metric']} {t['value']:g} (* = recommended)"))
    return save(fig, path)


def advice_md(g: dict, rows, rec, lines: List[str]) -> str:
    t = g["target"]
    cols = g["columns"]
    budget = "; ".join(f"R={c['R']:.3g}: {c['sim_s']:.4g} s ({c['sgd_loads']:,} loads of plain SGD, an evaluation "
                       f"every {c['every_loads']:,})" for c in cols)
    md = [f"# Echo advice: {g['workload']}", "",
          *[f"**{x[len('advise: '):]}**" for x in lines], "",
          f"- hardware: {g['hardware']}", f"- target: {target_text(t)}",
          f"- pilot: levels {', '.join(lv['name'] for lv in g['levels'])}; seeds {g['seeds']}; simulated-time budget "
          f"per run ({g['budget_fraction']:g} of the workload's budget): {budget}",
          f"- runs: {g['ran']} made ({g['spent_s']:.0f} s), {g['reused']} found done; cells in {g['out']}/runs/", "",
          table(g, rows, rec), "",
          rates_md(g, rows), "",
          "Echoing, in expected steps per fresh batch (the order the recommendation keeps as R grows): "
          + ", ".join(f"{n} {'max(R, 1)' if n == 'adaptive' else format(a, '.3g')}" for n, a in g["amounts"].items())
          + ".", ""]
    moved = [(k, r) for k, r in rec.items() if r["level"] and r["unconstrained"] and r["unconstrained"] != r["level"]]
    for k, r in moved:
        md.append(f"- At R = {float(k):.3g} the fastest level was {r['unconstrained']}, which echoes less than the "
                  f"recommendation at a smaller R; the monotone rule recommends {r['level']}.")
    return "\n".join(md) + "\n"


def rates_md(g: dict, rows) -> str:
    """Which learning rate each level used, and (successive halving) what every rung of its search found."""
    if g.get("same_rate", "trials" not in g):
        return (f"Learning rate: the workload's {g['lr']:g} for every level (--same-rate): a level whose best rate "
                "is another one is compared at a disadvantage.")
    rg = ", ".join(f"{c} rate{'s' if c > 1 else ''} to {f:.3g} of the budget" for c, f in g["rungs"])
    head = (f"Learning rates: each level tried {', '.join(format(x, 'g') for x in g['rates'])} (x2 apart around the "
            f"workload's {g['lr']:g}), by successive halving ({rg}; the best third of each rung went on; the "
            f"rungs before the last on seed {g['seeds'][0]}, the last on every seed); the speed-up compares plain SGD "
            "at its best rate with each level at its own.")
    out = []
    for col in g["columns"]:
        for lv in g["levels"]:
            t = g["trials"].get(f"{col['R']:.6g}|{lv['name']}")
            if not t:
                continue
            said = []
            for k, r in enumerate(t["rungs"]):
                cells = [f"{x:g} ({_rung_cell(r['cells'][format(x, 'g')])})" for x in r["rates"]]
                said.append(f"{k + 1} ({r['fraction']:.3g}): " + ", ".join(cells))
            out.append([f"{col['R']:.3g}", lv["name"], "-" if t["chosen"] is None else f"{t['chosen']:g}",
                        "; ".join(said)])
    cols = ["R", "level", "chosen lr", f"rung (budget): rates best first (simulated seconds to target, or best "
                                       f"{g['target']['metric']})"]
    return head + "\n\n" + markdown(pd.DataFrame(out, columns=cols))


def _rung_cell(cells: List[dict]) -> str:
    times = [c.get("sim_s") for c in cells]
    if all(t is not None for t in times):
        return f"{geometric_mean(times):.3g} s"
    bests = [c.get("best") for c in cells if c.get("best") is not None]
    reached = sum(t is not None for t in times)
    return (f"{reached}/{len(cells)} at target, best {sum(bests) / len(bests):.3g}" if bests else
            f"{reached}/{len(cells)} at target")


def analyse(g: dict, tolerance: float) -> tuple:
    rows = summarise(g)
    rec = pick(rows, [c["R"] for c in g["columns"]], tolerance)
    speedups(g, rec)
    g["amounts"] = {lv["name"]: rows[f"{g['columns'][0]['R']:.6g}"][lv["name"]]["amount"] for lv in g["levels"]}
    return rows, rec


def write(g: dict, tolerance: float, out: Path, log=print) -> dict:
    """advice.md, grid.json (with the recommendation) and the heatmap; returns the recommendation."""
    rows, rec = analyse(g, tolerance)
    lines = [line(g, rec, c["R"]) for c in g["columns"]]
    out.mkdir(parents=True, exist_ok=True)
    (out / "advice.md").write_text(advice_md(g, rows, rec, lines))
    figs = heatmap(g, rows, rec, out / "heatmap")
    write_json(out / "grid.json", {**g, "tolerance": tolerance, "summary": rows, "recommendation": rec})
    return {"rows": rows, "recommendation": rec, "lines": lines, "figures": [str(f) for f in figs]}


def budget_check(g: dict, cell: dict) -> None:
    """Raised while the grid runs: plain SGD missed the target within the pilot's budget."""
    if cell["level"] != "none" or cell["reached"] or not cell.get("final", True):
        return  # a rung of the rate search may stop short of the target: only the full budget's run counts
    t = g["target"]
    best = "" if cell.get("best") is None else f"; its best {t['metric']} was {cell['best']:.4g}"
    raise ConfigError(
        f"the pilot budget is too small to reach the target: plain SGD (seed {cell['seed']}) did not reach "
        f"{target_text(t)} within {cell['end'].get('sim_s') or 0:.4g} "
        f"simulated seconds ({g['budget_fraction']:g} of the workload's budget) at lr {cell.get('lr', g.get('lr')):g}, "
        f"its best rate{best}. Without plain SGD's time there "
        f"is no speed-up to predict. Raise --budget-fraction (or the workload's budget.example_loads), or lower "
        f"target.value. The finished runs are kept in {g['out']} and found again by the next call with the same "
        "settings.")
