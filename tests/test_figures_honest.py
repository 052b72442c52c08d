"""Figures that do not mislead, checked on the drawn matplotlib objects of tiny synthetic runs: a
legend never overlaps an axes (it sits outside them), every plotted value lies within the y-limits
even when a wished --ylim would cut off a collapsed run, titles have at most two lines, and the
speed-up figure's error bars are the verdict's intervals (the paired t interval over the measuring
seeds), chosen on the tuning seeds."""
from __future__ import annotations

import runpy
from pathlib import Path

import numpy as np
import pytest

from runner.report import find_runs, plots, stats

from .test_verdict import write_run

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def script():
    return runpy.run_path(str(ROOT / "scripts" / "at_best_lr.py"), run_name="at_best_lr")


def check_honest(fig) -> None:
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    assert fig.get_suptitle().count("\n") <= 1, fig.get_suptitle()
    axes = [ax for ax in fig.axes if ax.get_visible() and (ax.get_lines() or ax.collections)]
    legends = fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert legends, "a figure with several lines has a legend"
    for leg in legends:
        box = leg.get_window_extent(renderer)
        for ax in axes:
            assert not box.overlaps(ax.get_window_extent(renderer)), "the legend covers an axes"
    for ax in axes:
        lo, hi = ax.get_ylim()
        ys = [np.asarray(line.get_ydata(), float) for line in ax.get_lines()]
        ys += [p.vertices[:, 1] for c in ax.collections for p in c.get_paths()]
        ys = np.concatenate([y[np.isfinite(y)] for y in ys])
        assert ys.min() >= lo and ys.max() <= hi, (ax.get_ylabel(), ys.min(), ys.max(), lo, hi)


def collapsed_runs(root: Path) -> Path:
    """Three methods at two rates, four seeds; cosine's seed 3 collapses to 0.12 at the end, far below
    a wished y range of 0.5-0.9."""
    for s in range(4):
        for lr in (0.05, 0.1):
            write_run(root / f"sgd-{lr}-{s}", "sgd", seed=s, lr=lr, T=1000 + 100 * s, final=0.93)
            write_run(root / f"cos-{lr}-{s}", "cosine", seed=s, lr=lr, T=600, final=0.12 if s == 3 else 0.95)
            write_run(root / f"lin-{lr}-{s}", "linear", seed=s, lr=lr, T=800, final=0.94)
    return root


def test_curves_show_a_collapsed_run_keep_legends_off_the_data_and_titles_short(tmp_path, script):
    root = collapsed_runs(tmp_path / "runs")
    runs = find_runs([root])
    figs, table = script["curves"](runs, ["example_loads", "step"], "test_acc", tmp_path / "c", (0.5, 0.9),
                                   tuning=[0, 1], measuring=[2, 3])
    assert list(table["chosen on seeds"].unique()) == ["0, 1"] and list(table["measured on seeds"].unique()) == ["2, 3"]
    (fig, _), = figs
    check_honest(fig)
    assert fig.axes[0].get_ylim()[0] < 0.12  # the wished 0.5 gave way to the collapsed seed
    assert "band: min to max over the seeds" in [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    at_one_rate = [r for r in runs if r.lr == 0.05]
    (fig, _), = plots.curves_figs(at_one_rate, ["example_loads"], "test_acc", tmp_path / "d", ylim=(0.5, 0.9))
    check_honest(fig)
    rows = [dict(r, best=r["lr"] == 0.05) for r in plots_rows(runs)]
    for fig, _ in plots.best_figs(runs, rows, "example_loads", "test_acc", tmp_path / "b", ylim=(0.5, 0.9)):
        check_honest(fig)


def plots_rows(runs):
    from runner.report.tables import lr_table

    return lr_table(runs, "test_acc")


def test_the_speedup_bars_are_the_verdicts_intervals_over_the_measuring_seeds(tmp_path, script):
    # Levels 1/p = 1, 2, 4 at two rates, four seeds; the rate 0.05 is best on the tuning seeds 0, 1
    # (0.1 takes twice the loads); seeds 2 and 3 measure.
    T = {(r, s): 1200 - 200 * r + 100 * s + 100 * (s == 3) * r for r in (1, 2, 4) for s in range(4)}
    for (r, s), t in T.items():
        sched = {"schedule.name": "none"} if r == 1 else {"schedule.name": "constant", "schedule.p": 1 / r}
        for lr, slow in ((0.05, 1), (0.1, 2)):
            write_run(tmp_path / "sp" / f"r{r}-{lr}-{s}", "sgd", seed=s, lr=lr, T=slow * t, final=0.93, end=4000,
                      **sched)
    runs = find_runs([tmp_path / "sp"])
    figs, table, df = script["speedup"](runs, "test_acc", tmp_path / "fig", tuning=[0, 1], measuring=[2, 3])
    assert list(df.lr) == [0.05] * 3 and set(table["measured on seeds"]) == {"2, 3"}
    pts = df.set_index("reuse")
    for r in (2, 4):
        want = stats.paired_ratio({s: T[1, s] for s in (2, 3)}, {s: T[r, s] for s in (2, 3)})
        assert [pts.loc[r, k] for k in ("speedup", "speedup_lo", "speedup_hi")] == pytest.approx(
            [want.value, want.lo, want.hi], rel=1e-9)
    (fig, _), = figs
    check_honest(fig)
    ax = next(a for a in fig.axes if a.get_ylabel() == "speed-up in loads vs SGD")
    bars = next(c for c in ax.collections if len(c.get_segments()) == 3)  # the error bars, one per level
    ends = sorted((seg[0][0], seg[0][1], seg[1][1]) for seg in bars.get_segments())
    want = [(x, pts.loc[x, "speedup_lo"], pts.loc[x, "speedup_hi"]) for x in (1.0, 2.0, 4.0)]
    assert np.allclose(np.array(ends, float), np.array(want, float), rtol=1e-9)
    legend_text = " ".join(t.get_text() for leg in fig.legends for t in leg.get_texts())
    assert "for the speed-up: the verdict's, paired by seed" in legend_text and "measuring seeds 2, 3" in legend_text


def test_a_lower_target_reads_the_same_runs_at_their_rates_and_says_so(tmp_path, script):
    # As fig-speedup's second figure: runs that stop at 0.9, read at 0.5 (acc = 0.1 + 0.8 loads / T
    # reaches 0.5 at T / 2, on the records' grid of 100 loads); the rate stays the one 0.9 chose.
    T = {(r, s): 1200 - 200 * r + 50 * s for r in (1, 4) for s in range(3)}
    for (r, s), t in T.items():
        sched = {"schedule.name": "none"} if r == 1 else {"schedule.name": "constant", "schedule.p": 1 / r}
        for lr, slow in ((0.05, 1), (0.1, 2)):
            write_run(tmp_path / "sp" / f"r{r}-{lr}-{s}", "sgd", seed=s, lr=lr, T=slow * t, final=0.93, end=4000,
                      **sched)
    runs = find_runs([tmp_path / "sp"])
    figs, _, df = script["speedup"](runs, "test_acc", tmp_path / "low", tuning=[0], measuring=[1, 2], target=0.5)
    assert list(df.lr) == [0.05, 0.05]
    half = {(r, s): -(-T[r, s] // 200) * 100 for (r, s) in T}  # the first record at or past T / 2
    want = stats.paired_ratio({s: half[1, s] for s in (1, 2)}, {s: half[4, s] for s in (1, 2)})
    assert df.set_index("reuse").loc[4.0, "speedup"] == pytest.approx(want.value, rel=1e-9)
    (fig, _), = figs
    assert "≥ 0.5" in fig.get_suptitle()
    figs, _ = script["curves"](runs, ["example_loads"], "test_acc", tmp_path / "q", None, tuning=[0],
                               measuring=[1, 2], question="Early training (0.2 epoch)")
    assert figs[0][0].get_suptitle().startswith("Early training (0.2 epoch)")
