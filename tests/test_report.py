"""echo-report on a real multirun with known outcomes: a learning rate that learns nothing (1e-6),
one that learns (0.05) and one that diverges (1000), for SGD and Algorithm 1 with p = 0.5, two
seeds each, on digits with a constant learning rate and a simulated clock."""
from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from runner import report
from runner.report import cli as report_cli

from .conftest import ECHO_RUN, ROOT

METHODS = ("sgd", "constant(p=0.5)")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("sweep")
    out = subprocess.run(
        [*ECHO_RUN, "-m", f"hydra.sweep.dir={d}", "logger.progress=false", "budget.example_loads=480",
         "eval.every_loads=160", "train.threads=1", "hardware.name=test", "hardware.load_s_per_example=0.001",
         "hardware.step_s=0.01", "optim.lr_schedule=constant", "optim.lr=1e-6,0.05,1000",
         "schedule=none,constant", "seed=0,1"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env=dict(os.environ, OMP_NUM_THREADS="1"))
    # Exit 1: the runs at lr 1000 diverged (as they should); every other run completed.
    assert out.returncode == 1 and out.stderr.count("ended diverged") == 4, out.stderr[-2000:]
    return d


def by_hand(sweep: Path) -> dict:
    """{(method, lr): [final test_acc, or None for a diverged seed]} read straight from the files."""
    import yaml

    out: dict = {}
    for s in sweep.glob("*/summary.json"):
        summary = json.loads(s.read_text())
        lr = yaml.safe_load((s.parent / ".hydra" / "config.yaml").read_text())["optim"]["lr"]
        last = json.loads((s.parent / "metrics.jsonl").read_text().splitlines()[-1])
        out.setdefault((summary["method"], lr), []).append(
            last["test_acc"] if summary["status"] == "complete" else None)
    return out


@pytest.mark.slow
def test_best_lr_is_the_best_mean_and_diverged_runs_are_shown(sweep, tmp_path):
    runs = report.find_runs([sweep])
    assert len(runs) == 12
    truth = by_hand(sweep)
    rows = report.lr_table(runs, "test_acc")
    assert len(rows) == len(truth) == 6
    for m in METHODS:
        ok = {lr: np.mean(v) for (mm, lr), v in truth.items() if mm == m and None not in v}
        want = max(ok, key=ok.get)
        best = [r for r in rows if r["method"] == m and r["best"]]
        assert [r["lr"] for r in best] == [want] == [0.05]  # the known outcome
        assert best[0]["mean"] == pytest.approx(ok[want], abs=1e-12)
        assert best[0]["seeds"] == 2 and best[0]["min"] <= best[0]["mean"] <= best[0]["max"]
        # Learning nothing: about chance on 10 classes, far below the best.
        nothing = next(r for r in rows if r["method"] == m and r["lr"] == 1e-6)
        assert nothing["mean"] < 0.25 < best[0]["mean"] - 0.2
        div = next(r for r in rows if r["method"] == m and r["lr"] == 1000.0)
        assert div["diverged"] == 2 and not div["best"] and not div["eligible"]

    out = tmp_path / "best_lr"
    assert report_cli.main(["best-lr", str(sweep), "--out", str(out)]) == 0
    md = (tmp_path / "best_lr.md").read_text()
    assert md.count("diverged (2/2 seeds)") == 2 and md.count("**") == 4  # one bold best per method
    with open(tmp_path / "best_lr.csv") as f:
        table = list(csv.DictReader(f))
    assert {(r["method"], float(r["lr"])) for r in table if r["best"] == "True"} == {(m, 0.05) for m in METHODS}
    for ext in ("png", "pdf"):
        assert (tmp_path / f"best_lr.{ext}").stat().st_size > 5000


@pytest.mark.slow
def test_every_figure_is_written_from_the_cli(sweep, tmp_path):
    assert report_cli.main(["curves", str(sweep), "--out", str(tmp_path / "curves"), "--x", "step", "sim_s"]) == 0
    assert report_cli.main(["claim", str(sweep), "--target", "0.5", "--out", str(tmp_path / "claim")]) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    for lr in ("1e-06", "0.05", "1000"):  # one curves figure per learning rate, diverged ones included
        assert f"curves-digits-SmallCNN-lr{lr}.png" in names and f"curves-digits-SmallCNN-lr{lr}.pdf" in names
    # The table beside the curves (pandas to_markdown pads its cells: compare with single spaces):
    # diverged runs say so.
    md = re.sub(" +", " ", (tmp_path / "curves.md").read_text())
    assert md.count("| sgd | 2 (2 diverged) | diverged |") == 1 and md.count("| sgd | 2 | 0.") == 2
    # Only lr 0.05 reaches 50% accuracy, so the claim has one figure.
    assert {"claim.png", "claim.pdf", "claim.csv"} <= set(names)
    assert report_cli.main(["runs", str(tmp_path / "nowhere")]) == 2
    assert report_cli.main(["curves", str(sweep), "--metric", "test_ppl", "--out", str(tmp_path / "x")]) == 2


def test_every_learning_rate_gets_a_figure_with_both_methods(sweep):
    runs = report.find_runs([sweep])
    figs = report.curves_figs(runs, ["example_loads", "step", "wall_s", "sim_s"], "test_acc", Path("c"))
    rows = report.lr_table(runs, "test_acc")
    figs += report.best_figs(runs, rows, "example_loads", "test_acc", Path("b"))
    figs += report.claim_figs(runs, "test_acc", 0.5, Path("/tmp/claim-title-test"))
    assert len(figs) == 5  # a curves figure per learning rate, the best-lr figure, one claim figure
    for fig, _ in figs[:4]:
        methods = {line.get_label().split(" (")[0].split(", lr")[0] for line in fig.axes[0].get_lines()}
        assert set(METHODS) <= methods, methods


def test_one_colour_per_method_across_figures(sweep):
    runs = report.find_runs([sweep])
    figs = report.curves_figs(runs, ["example_loads"], "test_acc", Path("c"))
    figs += report.best_figs(runs, report.lr_table(runs, "test_acc"), "step", "test_acc", Path("b"))
    seen: dict = {}
    for fig, _ in figs:
        for line in fig.axes[0].get_lines():
            m = line.get_label().split(" (")[0].split(", lr")[0]
            if m in METHODS:
                seen.setdefault(m, set()).add(line.get_color())
    assert seen == {"sgd": {"#000000"}, "constant(p=0.5)": {report.COLOURS["constant(p=0.5)"]}}


def test_claim_points_are_the_first_records_at_target(sweep):
    import yaml

    runs = [r for r in report.find_runs([sweep]) if r.lr == 0.05]
    pts = report.claim_points(runs, "test_acc", 0.5, "max")
    assert [p["reuse"] for p in pts] == [1.0, 2.0]
    for p, method in zip(pts, METHODS):
        firsts = []
        for s in sweep.glob("*/summary.json"):
            cfg = yaml.safe_load((s.parent / ".hydra" / "config.yaml").read_text())
            if json.loads(s.read_text())["method"] != method or cfg["optim"]["lr"] != 0.05:
                continue
            recs = [json.loads(line) for line in (s.parent / "metrics.jsonl").read_text().splitlines()]
            firsts.append(next((r for r in recs if r["test_acc"] >= 0.5), None))
        assert len(firsts) == 2
        if None in firsts:
            assert p["reached"] < 2 and np.isnan(p["example_loads"])
            continue
        for k in ("example_loads", "step", "sim_s"):
            assert p[k] == pytest.approx(np.mean([r[k] for r in firsts]), rel=1e-12)
    if all(p["reached"] == 2 for p in pts):
        ideal = report.ideal(pts, "example_loads", {}, 32)
        assert ideal.tolist() == pytest.approx([pts[0]["example_loads"], pts[0]["example_loads"] / 2])


def test_a_model_size_is_part_of_its_name():
    def model(**m):
        return report.Run(Path("."), {"model": m}, [], None).model

    assert model(_target_="runner.models.SmallCNN", width=32) == "SmallCNN"
    assert model(_target_="runner.models.mobilenet_v3", size="small") == "mobilenet_v3-small"
    assert model(_target_="runner.models.gpt2", size="tiny") != model(_target_="runner.models.gpt2", size="small")


# ------------------------------------------------------------- synthetic run directories (fast)
def _synthetic(root: Path, single: bool = True) -> Path:
    """sgd alone (unless not ``single``) and sgd on 2 processes (the same method label, different
    world sizes), and cosine+on_load on 2 processes under a hardware profile with communication costs."""
    from .test_verdict import write_run

    hw = {"hardware.name": "cluster_ethernet", "hardware.comm_latency_s": 1e-3, "hardware.comm_bandwidth_Bps": 1e6}
    for s in range(2):
        if single:
            write_run(root / f"sgd-{s}", "sgd", seed=s, T=1000 + 100 * s, final=0.93)
        write_run(root / f"sgd2-{s}", "sgd", seed=s, T=800, final=0.91 + 0.01 * s, world_size=2)
        write_run(root / f"onload-{s}", "cosine+on_load", seed=s, T=600 + 200 * s, final=0.94, world_size=2,
                  sim_rate=0.02, **hw)
    return root


def test_single_process_and_data_parallel_runs_never_share_a_line_or_a_row(tmp_path):
    runs = report.find_runs([_synthetic(tmp_path / "runs")])
    assert sorted({(r.label, r.world_size) for r in runs}) == [
        ("cosine+on_load ×2", 2), ("sgd", 1), ("sgd ×2", 2)]
    (fig, _), = report.curves_figs(runs, ["example_loads"], "test_acc", Path("c"))
    lines = {ln.get_label(): ln for ln in fig.axes[0].get_lines() if not ln.get_label().startswith("_")}
    assert set(lines) == {"sgd (2 seeds)", "sgd ×2 (2 seeds)", "cosine+on_load ×2 (2 seeds)"}
    assert lines["sgd (2 seeds)"].get_linestyle() == "-" and lines["sgd ×2 (2 seeds)"].get_linestyle() == "--"
    assert lines["sgd (2 seeds)"].get_color() == lines["sgd ×2 (2 seeds)"].get_color() == "#000000"
    # the single-process mean is of the single-process seeds only: 0.93 at the end, not (0.93 + 0.915) / 2
    assert lines["sgd (2 seeds)"].get_ydata()[-1] == pytest.approx(0.93)
    assert lines["sgd ×2 (2 seeds)"].get_ydata()[-1] == pytest.approx(0.915)
    rows = report.lr_table(runs, "test_acc")
    assert sorted((r["label"], r["world_size"], r["seeds"], r["best"]) for r in rows) == [
        ("cosine+on_load ×2", 2, 2, True), ("sgd", 1, 2, True), ("sgd ×2", 2, 2, True)]
    md = re.sub(" +", " ", report.method_table(runs, "test_acc"))
    assert "| sgd | 2 | 0.9300 ± 0.0000 | 1050 ± 50 |" in md and "| sgd ×2 | 2 | 0.9150 ± 0.0050 | 800 ± 0 |" in md


def test_stats_intervals_best_lr_and_paired_speed_up(tmp_path):
    from .test_verdict import COSINE_T, SGD_T, log_ratio_interval, make_runs

    root = make_runs(tmp_path / "runs")
    _synthetic(tmp_path / "runs" / "dp", single=False)  # the single-process sgd runs are in methods/
    out = tmp_path / "stats"
    assert report_cli.main(["stats", str(root / "methods"), str(root / "dp"), "--out", str(out)]) == 0
    with open(tmp_path / "stats.csv") as f:
        rows = {(r["label"], float(r["lr"])): r for r in csv.DictReader(f)}
    assert len(rows) == 9  # sgd 0.05/0.5, cosine 0.05/0.1, linear, constant, step; sgd ×2, cosine+on_load ×2
    assert {k for k, r in rows.items() if r["best_lr"] == "True"} == {
        ("sgd", 0.05), ("cosine", 0.1), ("linear", 0.05), ("constant(p=0.5)", 0.05), ("step", 0.05),
        ("sgd ×2", 0.05), ("cosine+on_load ×2", 0.05)}
    sgd, cos = rows["sgd", 0.05], rows["cosine", 0.1]
    # the final metric and the loads to target: t intervals over the 3 seeds
    lo, hi = scipy.stats.t.interval(0.95, 2, loc=np.mean(SGD_T), scale=scipy.stats.sem(SGD_T))
    assert [float(sgd[k]) for k in ("example_loads_to_target", "example_loads_to_target_lo",
                                    "example_loads_to_target_hi")] == pytest.approx([np.mean(SGD_T), lo, hi])
    assert float(sgd["final"]) == pytest.approx(0.935) and sgd["sim_s_to_target_note"] == "sim_s not recorded"
    # the paired speed-up of cosine at its best lr (0.1) against sgd at its own (0.05)
    assert [float(cos[k]) for k in ("speedup_example_loads", "speedup_example_loads_lo", "speedup_example_loads_hi")] \
        == pytest.approx(log_ratio_interval(SGD_T, COSINE_T), rel=1e-9)
    assert cos["baseline"] == "sgd" and float(cos["baseline_lr"]) == 0.05
    step = rows["step", 0.05]
    assert step["example_loads_to_target"] == ""
    assert step["example_loads_to_target_note"] == "not reached by 1 of 3 seeds"
    assert step["speedup_example_loads_note"] == "not reached by 1 of 3 seeds (step)"
    # data parallel: its own section, compared with sgd at its own world size (sgd ×2)
    assert rows["cosine+on_load ×2", 0.05]["baseline"] == "sgd"
    assert float(rows["cosine+on_load ×2", 0.05]["speedup_example_loads"]) == pytest.approx(
        log_ratio_interval([800, 800], [600, 800])[0])
    md = re.sub(" +", " ", (tmp_path / "stats.md").read_text())
    assert "· 1 process" in md and "· 2 processes (data parallel)" in md
    assert "| step | 0.05 | 3 |" in md and md.count("not reached by 1 of 3 seeds") >= 2
    assert report_cli.main(["stats", str(root / "methods"), "--confidence", "95", "--out", str(out)]) == 2


def test_clock_check_compares_sim_s_with_wall_s(tmp_path, capsys):
    from .test_verdict import write_run

    root = tmp_path / "runs"
    hw = {"hardware.name": "measured", "hardware.step_s": 0.01}
    write_run(root / "a", "sgd", seed=0, wall_rate=0.010, sim_rate=0.011, **hw)      # +10 % at every record
    write_run(root / "b", "cosine", seed=1, wall_rate=0.010, sim_rate=0.013, **hw)   # +30 %
    write_run(root / "c", "sgd", seed=2)                                             # no sim_s: skipped
    out = tmp_path / "clock"
    assert report_cli.main(["clock-check", str(root), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"skipped {root / 'c'}: no sim_s" in printed
    with open(tmp_path / "clock.csv") as f:
        recs = list(csv.DictReader(f))
    assert len(recs) == 2 * 20  # every record after the first (wall_s = 0) of the two runs with sim_s
    for r in recs:
        want = 0.1 if r["dir"].endswith("a") else 0.3
        assert float(r["rel_err"]) == pytest.approx(want, rel=1e-9)
        assert float(r["rel_err"]) == pytest.approx((float(r["sim_s"]) - float(r["wall_s"])) / float(r["wall_s"]))
    assert sum(r["end"] == "True" for r in recs) == 2
    md = re.sub(" +", " ", (tmp_path / "clock.md").read_text())
    assert "| +10.0% |" in md and "| +30.0% |" in md and "| measured | 2 | 40 | +20.0% | 20.0% | 50% |" in md
    assert "Skipped 1 run(s) without sim_s" in md
    for ext in ("png", "pdf"):
        assert (tmp_path / f"clock.{ext}").stat().st_size > 5000
    # runs with no sim_s at all: nothing to check, exit 2 with one paragraph
    assert report_cli.main(["clock-check", str(root / "c"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "hardware=measured" in err and err.count("\n") == 1


def test_clock_check_figure_draws_the_15_percent_band(tmp_path):
    from runner.report import tables

    from .test_verdict import write_run

    write_run(tmp_path / "a", "sgd", wall_rate=0.01, sim_rate=0.0105, **{"hardware.name": "measured"})
    df, _ = tables.clock_frame(report.find_runs([tmp_path]))
    fig, _ = report.clock_check_fig(df, Path("x"))
    band = [c for c in fig.axes[0].collections if c.get_label() == "±15%"]
    assert len(band) == 1


def test_dp_table_from_the_cli(tmp_path, capsys):
    root = _synthetic(tmp_path / "runs")
    out = tmp_path / "dp"
    assert report_cli.main(["dp", str(root), "--out", str(out)]) == 0
    with open(tmp_path / "dp.csv") as f:
        rows = {r["method"]: r for r in csv.DictReader(f)}
    assert sorted(rows) == ["cosine+on_load ×2", "sgd", "sgd ×2"]
    on = rows["cosine+on_load ×2"]
    steps = round(2000 / 32)
    assert (int(on["ranks"]), int(on["seeds"]), float(on["rounds"])) == (2, 2, steps)
    assert float(on["comm_s"]) == pytest.approx(steps * 1e-3 + steps * 1000 / 1e6)
    assert float(on["target_loads"]) == 700 and float(on["target_sim_s"]) == pytest.approx(700 * 0.02)
    assert float(on["sim_s"]) == pytest.approx(2000 * 0.02)


@pytest.mark.slow
def test_the_report_only_reads_runs():
    """echo-report never imports the trainer, the echo-run CLI or the advisor (nor torch)."""
    code = ("import sys, runner.report, runner.report.verdict; "
            "print(sorted(m for m in sys.modules if m in ('runner.train', 'runner.cli', 'runner.advise', 'torch')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr
