"""echo-report on a real multirun with known outcomes: a learning rate that learns nothing (1e-6),
one that learns (0.05) and one that diverges (1000), for SGD and Algorithm 1 with p = 0.5, two
seeds each, on digits with a constant learning rate and a simulated clock."""
from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib.text import Text

from runner import report

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
    assert report.main(["best-lr", str(sweep), "--out", str(out)]) == 0
    md = (tmp_path / "best_lr.md").read_text()
    assert md.count("diverged (2/2 seeds)") == 2 and md.count("**") == 4  # one bold best per method
    with open(tmp_path / "best_lr.csv") as f:
        table = list(csv.DictReader(f))
    assert {(r["method"], float(r["lr"])) for r in table if r["best"] == "True"} == {(m, 0.05) for m in METHODS}
    for ext in ("png", "pdf"):
        assert (tmp_path / f"best_lr.{ext}").stat().st_size > 5000


def test_every_figure_is_written_from_the_cli(sweep, tmp_path):
    assert report.main(["curves", str(sweep), "--out", str(tmp_path / "curves"), "--x", "step", "sim_s"]) == 0
    assert report.main(["claim", str(sweep), "--target", "0.5", "--out", str(tmp_path / "claim")]) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    for lr in ("1e-06", "0.05", "1000"):  # one curves figure per learning rate, diverged ones included
        assert f"curves-digits-SmallCNN-lr{lr}.png" in names and f"curves-digits-SmallCNN-lr{lr}.pdf" in names
    md = (tmp_path / "curves.md").read_text()  # the table beside the curves: diverged runs say so
    assert md.count("| sgd | 2 (2 diverged) | diverged |") == 1 and md.count("| sgd | 2 | 0.") == 2
    # Only lr 0.05 reaches 50% accuracy, so the claim has one figure.
    assert {"claim.png", "claim.pdf", "claim.csv"} <= set(names)
    assert report.main(["runs", str(tmp_path / "nowhere")]) == 2
    assert report.main(["curves", str(sweep), "--metric", "test_ppl", "--out", str(tmp_path / "x")]) == 2


def test_titles_name_data_set_model_and_lr_and_fonts_are_readable(sweep):
    runs = report.find_runs([sweep])
    figs = report.curves_figs(runs, ["example_loads", "step", "wall_s", "sim_s"], "test_acc", Path("c"))
    rows = report.lr_table(runs, "test_acc")
    figs += report.best_figs(runs, rows, "example_loads", "test_acc", Path("b"))
    figs += report.claim_figs(runs, "test_acc", 0.5, Path("/tmp/claim-title-test"))
    assert len(figs) == 5
    for fig, stem in figs:
        titles = [fig._suptitle.get_text()] if fig._suptitle else []
        titles += [ax.get_title() for ax in fig.axes]
        title = " ".join(titles)
        assert "digits" in title and "SmallCNN" in title and "lr " in title, title
        sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_text()]
        assert sizes and min(sizes) >= 10
    best_title = figs[3][0]._suptitle.get_text()
    assert "sgd 0.05" in best_title and "constant(p=0.5) 0.05" in best_title
    for lr in ("1e-06", "0.05", "1000"):
        assert any(f"lr {lr} " in (f._suptitle.get_text() if f._suptitle else "") for f, _ in figs[:3])


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
