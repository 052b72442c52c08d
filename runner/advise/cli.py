"""The ``echo-advise`` command: measure, recommend, confirm (see ``runner.advise``).

Exit status: 0 done; 1 the confirmation could not measure a speed-up (a run missed the target);
2 bad input (one paragraph says what to do; a partial grid is kept and continued by the next call).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import List, Optional

from ..config import import_from_cwd
from ..errors import ConfigError
from . import profile as prof

RESULTS = Path("results") / "advisor"

DESCRIPTION = "How much data echoing for your workload on this machine? Measure, recommend, confirm."
EPILOG = """OVERRIDES are echo-run's (dataset=..., data.workers=4, model=..., data.batch_size=..., train.device=...,
launcher=torchrun launcher.nproc_per_node=2): the workload. `echo-advise COMMAND --help` for the options.
"""


def _common(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("overrides", nargs="*", metavar="OVERRIDE", help="echo-run overrides: the workload")
    ap.add_argument("--name", default=prof.DEFAULT_NAME,
                    help="the profile's name: conf/hardware/NAME.yaml under the working directory, selected as "
                         "hardware=NAME by runs started there (default: %(default)s)")
    ap.add_argument("--profile-dir", default=None, metavar="DIR",
                    help="write/read the profile as DIR/hardware/NAME.yaml instead (runs then add "
                         "hydra.searchpath=[conf,file://DIR])")


def _measuring(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("measuring")
    g.add_argument("--windows", type=int, default=5, help="pipeline throughput windows (default: %(default)s)")
    g.add_argument("--window-s", type=float, default=0.5, help="seconds per window, at least (default: %(default)s)")
    g.add_argument("--steps", type=int, default=20, help="timed training steps (default: %(default)s)")


def parsers() -> tuple:
    """(echo-advise's parser, its subcommands' parsers by name)."""
    fmt = argparse.RawDescriptionHelpFormatter
    ap = argparse.ArgumentParser(prog="echo-advise", formatter_class=fmt, description=DESCRIPTION, epilog=EPILOG)
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", required=True)
    m = sub.add_parser("measure", formatter_class=fmt, help="R on this machine: writes the hardware profile",
                       epilog=EPILOG, description=(
        "Measure this machine on the workload: the pipeline's throughput with the configured workers, the "
        "step time, an evaluation, and under launcher=torchrun one all-reduce of the model; print R (batch "
        "load time / step time) with its spread and write the hardware profile that runs select as "
        "hardware=measured."))
    _common(m)
    _measuring(m)
    r = sub.add_parser("recommend", formatter_class=fmt, help="a pilot grid on the simulated clock: the level to use",
                       epilog=EPILOG, description=(
        "Measure R (or take --ratios), run a pilot grid of echo levels x seeds on the simulated clock with "
        "the profile, each run stopping at the target and each level at its own best learning rate (--rates, "
        "or --same-rate), and recommend the level with the shortest simulated time to the target (monotone in "
        "R), with its predicted speed-up over plain SGD at its best rate and a 95% interval over seeds. Writes "
        "advice.md, grid.json and heatmap.png/pdf."))
    _common(r)
    r.add_argument("--levels", nargs="+", default=None, metavar="LEVEL",
                   help="none, p=P, cosine (linear, step), adaptive, e=E (default: none p=0.5 p=0.25 cosine adaptive e=2 e=4)")
    r.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="(default: 0 1 2)")
    r.add_argument("--ratios", type=float, nargs="+", default=None, metavar="R",
                   help="assumed loader ratios instead of the measured one (hardware=ratio, or the hardware=... "
                        "override given, with hardware.ratio=R); several make the R x level heatmap")
    r.add_argument("--budget-fraction", type=float, default=0.5, metavar="F",
                   help="each run's simulated-time budget: plain SGD's time for F of the workload's "
                        "budget.example_loads (default: %(default)s)")
    r.add_argument("--max-runs", type=int, default=60, metavar="N",
                   help="new runs in this call at most; the rest on the next call (default: %(default)s)")
    r.add_argument("--rates", type=int, default=None, metavar="N",
                   help="learning rates per level, x2 apart around the workload's (3: lr/2, lr, 2 lr), pruned by "
                        "successive halving: every rate runs to 1/3 of the budget on the first seed, the best third "
                        "go on at 3x the budget, until one runs the full budget on every seed; that is the level's "
                        "rate, and the speed-up compares the best SGD rate with it. With 3 rates and 3 seeds at most "
                        "4/3 of the simulated time of one rate (default: 3)")
    r.add_argument("--same-rate", action="store_true",
                   help="the workload's learning rate for every level, one run per level and seed (the advice says so)")
    r.add_argument("--evals", type=int, default=20,
                   help="evaluations within plain SGD's budget: the resolution of the time to target (default: %(default)s)")
    r.add_argument("--tolerance", type=float, default=0.05,
                   help="levels within this fraction of the fastest are ties, won by the least echoing (default: %(default)s)")
    r.add_argument("--out", default=None, help="default: results/advisor/<data set>-<hash of the workload>")
    r.add_argument("--runs", nargs="*", default=[], metavar="DIR", help="more directories to find finished cells in")
    r.add_argument("--remeasure", action="store_true", help="measure again even if a profile of this workload exists")
    r.add_argument("--confirm", action="store_true", help="then confirm (see echo-advise confirm)")
    r.add_argument("--confirm-seeds", type=int, nargs="+", default=None, help="seeds to confirm (default: --seeds)")
    _measuring(r)
    c = sub.add_parser("confirm", formatter_class=fmt, help="SGD against the recommendation, for real",
                       epilog=EPILOG, description=(
        "Train plain SGD and the recommended level for real on the actual pipeline (hardware=measured, so "
        "each run records sim_s beside wall_s) and report the measured wall-clock speed-up beside the "
        "interval that recommend predicted: inside it, or by how much it missed."))
    _common(c)
    c.add_argument("--seeds", type=int, nargs="+", default=None, help="(default: the pilot's seeds)")
    c.add_argument("--out", default=None, help="the directory recommend wrote (default: as recommend's)")
    return ap, {"measure": m, "recommend": r, "confirm": c}


# -------------------------------------------------------------------------------------------- helpers
def split_hardware(overrides: List[str]) -> tuple:
    """(the overrides without a hardware=NAME selection, that NAME or None)."""
    rest, name = [], None
    for o in overrides:
        key, _, val = o.partition("=")
        if key.lstrip("+") == "hardware":
            name = val
        else:
            rest.append(o)
    return rest, name


def out_dir(base_cfg, tag: str, given: Optional[str]) -> Path:
    """One directory per workload, budget and target (what every cell shares)."""
    if given:
        return Path(given)
    from ..config import resolved

    res = resolved(base_cfg)
    keep = {k: v for k, v in res.items() if k not in ("seed", "echo", "schedule", "hardware", "logger", "checkpoint",
                                                      "resume", "name", "eval")}
    keep["target"] = {k: v for k, v in res["target"].items() if k != "stop"}
    h = hashlib.sha256(json.dumps([keep, tag], sort_keys=True, default=str).encode()).hexdigest()[:8]
    return RESULTS / f"{res['data']['name']}-{h}"


def hw_hash(h: dict) -> str:
    return hashlib.sha256(json.dumps(h, sort_keys=True, default=str).encode()).hexdigest()[:12]


def use_profile(a, base: List[str], log) -> tuple:
    """(the hardware overrides of the measured column, the profile): the profile of this workload, measured
    now when there is none (or --remeasure). Another workload's profile under the same name is refused,
    not replaced: it may have taken a while to measure, and its runs name it."""
    from ..config import resolved
    from .grid import compose
    from .measure import measure

    cfg = compose(base)
    p = prof.load(a.name, a.profile_dir)
    if p is not None and not a.remeasure and not prof.matches(p, resolved(cfg)):
        raise ConfigError(
            f"the hardware profile {prof.path(a.name, a.profile_dir)} was measured for another workload "
            f"({(p.get('info') or {}).get('workload', '?')}), not for this one ({prof.describe(resolved(cfg))}). "
            f"Give this workload its own profile with --name NEW (both are kept), or add --remeasure to measure "
            f"this workload and replace that profile.")
    if a.remeasure or p is None:
        p, _ = measure(cfg, base, a.name, a.profile_dir, a.windows, a.window_s, a.steps, log=log)
    else:
        from .measure import fmt_R

        log(f"advise: using the profile {prof.path(a.name, a.profile_dir)} measured {p['info'].get('date')}: "
            f"{fmt_R(p['info'])} (--remeasure to measure again)")
    return [*prof.searchpath(a.profile_dir), f"hardware={a.name}"], p


# ------------------------------------------------------------------------------------------- commands
def cmd_measure(a, log=print) -> int:
    from .grid import compose
    from .measure import measure

    base, hw = split_hardware(a.overrides)
    measure(compose(base), base, a.name, a.profile_dir, a.windows, a.window_s, a.steps, log=log)
    return 0


def cmd_recommend(a, log=print) -> int:
    from ..config import resolved
    from ..summary import model_label
    from . import grid as G
    from . import levels as L
    from . import recommend as REC

    base, hw_name = split_hardware(a.overrides)
    G.check_overrides(base)
    if not 0 < a.budget_fraction <= 10:
        raise ConfigError(f"--budget-fraction {a.budget_fraction:g} is not valid: give a positive fraction of the "
                          "workload's budget (0.5: half of it).")
    if a.max_runs < 0 or a.evals < 1 or not a.seeds:
        raise ConfigError("--max-runs must be 0 or more, --evals 1 or more, and --seeds must name at least one seed.")
    if (a.rates is not None and a.rates < 1) or (a.same_rate and a.rates not in (None, 1)):
        raise ConfigError(f"--rates {a.rates} {'with --same-rate ' if a.same_rate else ''}is not valid: give the number "
                          "of learning rates each level tries (1 or more; 3 by default), or --same-rate alone for the "
                          "workload's rate at every level.")
    if a.confirm and (a.ratios or (hw_name and hw_name != a.name)):
        raise ConfigError("--confirm checks a prediction for this machine, so it needs the measured profile: drop "
                          "--ratios and any hardware=... override (confirm trains on this machine's pipeline).")
    lvls = L.parse_all(a.levels if a.levels is not None else L.DEFAULT)
    base_cfg = G.compose(base + ([*prof.searchpath(a.profile_dir), f"hardware={hw_name}"] if hw_name and a.ratios
                                 else []))
    task = None
    if a.ratios:
        if any(not (r >= 0) for r in a.ratios):
            raise ConfigError(f"--ratios {a.ratios}: give loader ratios of 0 or more (batch load time / step time).")
        G.check_target(base_cfg)
        from .. import data
        from .measure import starting

        with starting("building the data set"):  # its task says which metrics the runs record
            task = data.build(base_cfg.data).task
        G.check_target(base_cfg, task)
        if hw_name == a.name:  # the measured profile's step time (and its R replaced): it must be this workload's
            prof.require(a.name, a.profile_dir, resolved(G.compose(base)))
        hw = [*(prof.searchpath(a.profile_dir) if hw_name else []), f"hardware={hw_name or 'ratio'}"]
        columns = [G.column(base, [*hw, f"hardware.ratio={R:g}"], R, a.budget_fraction, a.evals)
                   for R in sorted(set(a.ratios))]
        mode, profile_hash, hw_desc = "ratios", None, (f"hardware={hw_name or 'ratio'} (step {columns[0]['step_s']:g} s) "
                                                       f"with hardware.ratio=R: assumed loader speeds")
    else:
        G.check_target(base_cfg)
        if hw_name and hw_name != a.name:  # a profile of the user's choice: its R, nothing measured
            hw, p, mode = [f"hardware={hw_name}"], None, "profile"
        else:
            hw, p = use_profile(a, base, log)
            task, mode = (p.get("info") or {}).get("task"), "measured"
        G.check_target(base_cfg, task)
        columns = [G.column(base, hw, None, a.budget_fraction, a.evals)]
        h = columns[0]["hardware_cfg"]
        profile_hash = hw_hash(h)
        hw_desc = (f"hardware={h['name']}: a batch loads in {columns[0]['batch_load_s'] * 1e3:.3g} ms, a step takes "
                   f"{columns[0]['step_s'] * 1e3:.3g} ms" + (f" (measured {h['info'].get('date')} on "
                                                             f"{h['info'].get('machine', {}).get('host')})"
                                                             if isinstance(h.get("info"), dict) else ""))
    out = out_dir(base_cfg, f"{mode}:{hw_name or a.name}", a.out)
    res = resolved(base_cfg)
    meta = {"mode": mode, "profile_hash": profile_hash, "hardware": hw_desc, "workload": prof.describe(res),
            "dataset": res["data"]["name"], "model": model_label(res["model"]), "lr": res["optim"]["lr"],
            "target": {k: res["target"][k] for k in ("metric", "value", "mode")},
            "budget_fraction": a.budget_fraction, "out": str(out), "overrides": a.overrides}
    rates = G.rates_around(float(res["optim"]["lr"]), 1 if a.same_rate else (a.rates or G.RATES))
    pilot = G.Pilot(base, columns, lvls, a.seeds, out, [Path(r) for r in a.runs], a.max_runs, log, meta, rates)
    log(cost(pilot, columns, lvls, a, p if mode == "measured" else None))

    def on_cell(c: dict) -> None:
        try:
            if not c["recorded"]:
                raise ConfigError(f"target.metric={meta['target']['metric']} is not in the records of {c['dir']}: this "
                                  "workload does not record it. Choose a metric it records (test_acc, test_loss, "
                                  "train_loss; test_ppl for language).")
            REC.budget_check({**meta, "seeds": a.seeds}, c)
        except ConfigError:
            pilot.save()
            raise

    pilot.run(on_cell)
    g = pilot.state()
    w = REC.write(g, a.tolerance, out, log)
    log(REC.table(g, w["rows"], w["recommendation"]))
    log(f"advise: {pilot.ran} runs made, {pilot.reused} found done; {out / 'advice.md'}, {out / 'grid.json'}, "
        f"{w['figures'][0]}")
    for ln in w["lines"]:
        print(ln)
    if a.confirm:
        return _confirm(base, out, a.confirm_seeds, log)
    return 0


def cost(pilot, columns: List[dict], lvls, a, p: Optional[dict]) -> str:
    """The pilot's bound, printed before it starts."""
    todo = pilot.missing()
    n = min(todo, a.max_runs)
    sim = max(c["sim_s"] for c in columns)
    evals = max(c["sgd_loads"] // c["every_loads"] + 1 for c in columns)
    eval_s = (p or {}).get("info", {}).get("eval_s") if p else None
    where = ", ".join(f"{c['R']:.3g}" for c in columns)
    rs = (f"the workload's lr {pilot.lr:g} for every level" if len(pilot.rates) == 1 else
          f"lr {', '.join(format(x, 'g') for x in pilot.rates)} per level by successive halving: "
          + ", ".join(f"{c} to {f:.3g} of the budget" for c, f in pilot.rungs))
    s = (f"advise: pilot: {pilot.total()} runs ({len(lvls)} levels x {len(a.seeds)} seeds x R = {where}; {rs}); "
         f"{pilot.total() - todo} found done, {todo} to run, {n} in this call (--max-runs {a.max_runs}). Each run stops "
         f"at the target or at {sim:.4g} s of simulated time ({a.budget_fraction:g} of the workload's budget), at most "
         f"{max(c['steps_max'] for c in columns):,} steps and {evals} evaluations: at most {n * sim:.4g} s of simulated "
         "training in this call")
    if p is not None:
        s += ", about as long on this machine (the profile is this machine)"
    if eval_s:
        s += f", plus at most {n * evals} evaluations of about {eval_s:.2g} s"
    return s + "."


def _confirm(base: List[str], out: Path, seeds, log) -> int:
    from ..report import finite  # here: the report's statistics load pandas and scipy, which --help needs not
    from .confirm import confirm, load_grid

    from omegaconf import OmegaConf

    from .grid import compose

    g = load_grid(out, " ".join(base))
    prof_now = compose([*base, *g["columns"][0]["hardware"]]).hardware
    if hw_hash(OmegaConf.to_container(prof_now, resolve=True)) != g.get("profile_hash"):
        raise ConfigError(f"the hardware profile changed since the pilot in {out} ran (measured again?): its prediction "
                          "was for the old one. Run `echo-advise recommend` with the same overrides again (cells of the "
                          "new profile are made, the old ones kept), then confirm.")
    r = confirm(g, base, out, seeds, log)
    log(r.get("clock", ""))
    print(r["line"])
    if r.get("runs"):
        log(f"confirm: {out / 'confirm.md'}, {out / 'confirm.json'}")
    return 1 if r.get("runs") and r["inside"] is None and not finite(r["measured"].get("value")) else 0


def cmd_confirm(a, log=print) -> int:
    from ..config import resolved
    from .grid import check_overrides, compose

    base, hw_name = split_hardware(a.overrides)
    check_overrides(base)
    if hw_name and hw_name != a.name:
        raise ConfigError(f"confirm checks a prediction for this machine, so it needs the profile measured here "
                          f"(hardware={a.name}, or --name), not hardware={hw_name}.")
    cfg = compose(base)
    prof.require(a.name, a.profile_dir, resolved(cfg))
    out = out_dir(cfg, f"measured:{hw_name or a.name}", a.out)
    return _confirm(base, out, a.seeds, log)


COMMANDS = {"measure": cmd_measure, "recommend": cmd_recommend, "confirm": cmd_confirm}


def main(argv: Optional[List[str]] = None) -> int:
    """Run a command; exit with its status (2 with one paragraph for bad input)."""
    args = list(sys.argv[1:] if argv is None else argv)
    import_from_cwd()  # the user's own classes, as in echo-run
    ap, commands = parsers()
    if not args or args[0] not in commands:
        ap.parse_args(args[:1])  # --help: exit 0; no command or an unknown one: argparse's error, exit 2
    # The command's own parser takes the rest intermixed, so that echo-run's overrides may stand between
    # options (argparse parses no subparser intermixed).
    cmd = args.pop(0)
    a = commands[cmd].parse_intermixed_args(args)
    sys.exit(run(cmd, a))


def run(cmd: str, a, log=None) -> int:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    log = log or (lambda *x: print(*x, file=sys.stderr, flush=True))
    try:
        return COMMANDS[cmd](a, log=log)
    except ConfigError as e:
        print(f"echo-advise {cmd}: error: {e}", file=sys.stderr)
        return 2
    except (HydraException, OmegaConfBaseException) as e:
        said = " ".join(str(e).split())
        print(f"echo-advise {cmd}: error: the overrides were refused: {said}. `echo-run --help` lists every group, "
              "option and value.", file=sys.stderr)
        return 2
