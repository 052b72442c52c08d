"""``echo-advise confirm``: plain SGD and the recommended level trained for real, on the actual
pipeline, and the measured wall-clock speed-up set beside the predicted one.

The confirmation runs are the pilot's cells of the measured R (the same workload, profile, budget,
evaluations and seeds; each level at the learning rate the pilot chose for it), with two changes:
adaptive echoing asks the real pipeline whether a fresh batch is ready
(``echo.ready_from=pipeline``; in the pilot the simulated clock said so), and they run in
``<out>/confirm/``. Each records ``sim_s`` (the clock's prediction for that very run) beside
``wall_s``. The measured speed-up is SGD's wall-clock time to the target over the level's, matched
by seed (``paired_ratio``: geometric mean with a 95% t interval); it is compared with the interval
that ``recommend`` predicted from the pilot, and the report says whether it lies inside it, and by
how much it misses it if not.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Dict, List, Optional

from ..errors import ConfigError
from ..metrics import write_json
from ..report import finite
from ..schema import target_text
from . import grid as G
from . import levels as L


def load_grid(out: Path, command: str) -> dict:
    p = Path(out) / "grid.json"
    if not p.is_file():
        raise ConfigError(f"there is no recommendation to confirm in {out} (no grid.json): run `echo-advise recommend "
                          f"{command}` first (with the same overrides), or give --out the directory it wrote.")
    g = json.loads(p.read_text())
    if g.get("mode") != "measured":
        raise ConfigError(f"the grid in {out} was made with --ratios or another hardware profile (an assumed loader "
                          "speed), so its prediction is not about this machine: run `echo-advise recommend` without "
                          "--ratios or hardware=... (it measures R) and confirm that.")
    if not g.get("complete") or "recommendation" not in g:
        raise ConfigError(f"the grid in {out} is partial (its pilot stopped before every cell ran): run the same "
                          "`echo-advise recommend` command again to finish it, then confirm.")
    return g


def verdict(measured: dict, predicted: dict) -> tuple:
    """(inside: bool or None, one sentence) for a measured speed-up against the predicted interval."""
    m = measured.get("value")
    if not finite(m):
        return None, f"no measured speed-up ({measured.get('note') or 'a run missed the target'})"
    p, lo, hi = predicted.get("value"), predicted.get("lo"), predicted.get("hi")
    if finite(lo) and finite(hi):
        if lo <= m <= hi:
            return True, f"inside the predicted interval {lo:.2f}-{hi:.2f}x"
        if m < lo:
            return False, (f"NOT inside the predicted interval {lo:.2f}-{hi:.2f}x: below its lower end by "
                           f"{(lo - m) / lo:.0%}")
        return False, f"NOT inside the predicted interval {lo:.2f}-{hi:.2f}x: above its upper end by {(m - hi) / hi:.0%}"
    return None, f"{(m - p) / p:+.0%} from the predicted {p:.2f}x (no predicted interval: one seed)"


def _estimate(base: Dict[int, Optional[float]], method: Dict[int, Optional[float]], name: str) -> dict:
    from ..report.stats import paired_ratio

    e = paired_ratio(base, method, base_name="none", method_name=name)
    return {"value": e.value, "lo": e.lo, "hi": e.hi, "n": e.n, "of": e.of, "note": e.note}


def clock_rows(runs: List[dict]) -> List[str]:
    out = ["| run | level | seed | wall_s at end | sim_s at end | error | wall_s to target | sim_s to target | error |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        e, hit = r["end"], r["reached"] or {}
        err = lambda s, w: "-" if not (finite(s) and finite(w) and w) else f"{(s - w) / w:+.1%}"  # noqa: E731
        f = lambda v: "-" if not finite(v) else f"{v:.3g}"  # noqa: E731
        out.append(f"| {Path(r['dir']).name} | {r['level']} | {r['seed']} | {f(e.get('wall_s'))} | {f(e.get('sim_s'))} | "
                   f"{err(e.get('sim_s'), e.get('wall_s'))} | {f(hit.get('wall_s'))} | {f(hit.get('sim_s'))} | "
                   f"{err(hit.get('sim_s'), hit.get('wall_s'))} |")
    return out


def confirm(g: dict, base_overrides: List[str], out: Path, seeds: Optional[List[int]] = None, log=print) -> dict:
    """Run (or find) the confirmation runs of grid ``g`` and compare; writes confirm.md/json."""
    from ..config import config_hash, resolved
    from ..runs import run_once
    from .measure import starting

    col = g["columns"][0]
    R = col["R"]
    rec = g["recommendation"][f"{R:.6g}"]
    name = rec["level"]
    if name is None:
        raise ConfigError(f"the grid in {out} recommends nothing (no level reached the target on every seed): there "
                          "is nothing to confirm. Raise --budget-fraction and run recommend again.")
    goal = g["target"]
    seeds = list(seeds if seeds is not None else g["seeds"])
    predicted = rec["speedup"]
    if name == "none":
        msg = (f"confirm: the recommendation at R = {R:.3g} is plain SGD (no echo level was faster by more than the "
               "tolerance): there is no speed-up to confirm.")
        res = {"level": name, "R": R, "seeds": seeds, "predicted": predicted, "measured": None, "inside": None,
               "verdict": "nothing to confirm", "line": msg, "runs": []}
        (Path(out) / "confirm.md").write_text(f"# Confirmation: {g['workload']}\n\n{msg[len('confirm: '):]}\n")
        write_json(Path(out) / "confirm.json", res)
        return res
    pair = [L.parse("none"), L.parse(name)]
    base_cfg = G.compose([*base_overrides, *col["hardware"]])
    p = base_cfg.pipeline
    background = p.background if p.background is not None else (p.examples_per_s is not None or base_cfg.data.workers > 0)
    extra = ["echo.ready_from=pipeline"] + (["pipeline.background=true"] if name == "adaptive" and not background else [])
    runs: List[dict] = []
    t0 = time.perf_counter()
    from .recommend import rate

    for s in seeds:
        for lv in pair:  # alternating, so that a change in the machine's load falls on both alike
            # each at the learning rate the pilot chose for it (its best; None: a grid from before, the workload's)
            ov = [*G.cell_overrides(base_overrides, col, lv, s, rate(g, R, lv.name)), *extra]
            cfg = G.compose(ov)
            h = config_hash(resolved(cfg))
            run_dir = Path(out) / "confirm" / f"{lv.slug}-seed{s}-{h[:8]}"
            log(f"confirm: training {lv.name} seed {s} on the real pipeline -> {run_dir}")
            with starting(f"the confirmation run of {lv.name} (seed {s})"):
                run_once(cfg, run_dir)
            c = G.read_cell(run_dir, G.loads_per_step(cfg))
            c.update(level=lv.name, seed=s, overrides=ov)
            runs.append(c)
    spent = time.perf_counter() - t0
    by = lambda lv, k: {r["seed"]: (r["reached"] or {}).get(k) for r in runs if r["level"] == lv}  # noqa: E731
    measured = _estimate(by("none", "wall_s"), by(name, "wall_s"), name)
    clock_said = _estimate(by("none", "sim_s"), by(name, "sim_s"), name)
    inside, how = verdict(measured, predicted)
    mfmt = "-" if not finite(measured["value"]) else (
        f"{measured['value']:.2f}x" + (f" (95% interval {measured['lo']:.2f}-{measured['hi']:.2f}x)"
                                       if finite(measured["lo"]) else ""))
    pfmt = (f"{predicted['value']:.2f}x" + (f" ({predicted['lo']:.2f}-{predicted['hi']:.2f}x)"
                                            if finite(predicted.get("lo")) else ""))
    head = (f"confirm: {name} against plain SGD at R = {R:.3g}, {len(seeds)} seed(s), wall-clock time to "
            f"{target_text(goal)} on the real pipeline: "
            f"measured speed-up {mfmt}; predicted {pfmt}: {how}.")
    errs = [(r["end"]["sim_s"] - r["end"]["wall_s"]) / r["end"]["wall_s"] for r in runs
            if finite(r["end"].get("sim_s")) and finite(r["end"].get("wall_s")) and r["end"]["wall_s"]]
    clock = (f"clock check: sim_s against wall_s at the end of these {len(errs)} runs: median error "
             f"{sorted(errs)[len(errs) // 2]:+.1%}, largest {max(errs, key=abs):+.1%}" if errs else "clock check: -")
    md = [f"# Confirmation: {g['workload']}", "", f"**{head[len('confirm: '):]}**", "",
          f"- predicted by the pilot (simulated time, seeds {g['seeds']}): {pfmt}",
          f"- learning rates (the pilot's choice): plain SGD {rate(g, R, 'none'):g}, {name} {rate(g, R, name):g}",
          f"- the clock's prediction for these very runs (their sim_s to target): "
          f"{'-' if not finite(clock_said['value']) else format(clock_said['value'], '.2f') + 'x'}",
          f"- measured (wall_s to target, seeds {seeds}): {mfmt}",
          f"- {clock}", f"- {len(runs)} runs in {out}/confirm/ ({spent:.0f} s in this call; finished ones are read again)", "",
          *clock_rows(runs), ""]
    (Path(out) / "confirm.md").write_text("\n".join(md))
    res = {"level": name, "R": R, "seeds": seeds, "predicted": predicted, "measured": measured,
           "clock_prediction": clock_said, "inside": inside, "verdict": how, "line": head, "clock": clock,
           "runs": runs, "spent_s": spent}
    write_json(Path(out) / "confirm.json", res)
    return res
