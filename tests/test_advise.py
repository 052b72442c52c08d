"""The advisor on a small grid of the embedded digits data, and time to target against the records."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner import advise
from runner.metrics import read_jsonl

# A narrow CNN and a lower target keep the grid to a few seconds of compute.
EXTRA = ["eval.every_loads=160", "model.width=8", "train.threads=1", "target.value=0.9"]


@pytest.fixture(scope="module")
def small_grid(tmp_path_factory):
    out = tmp_path_factory.mktemp("advisor")
    res = advise.advise([1, 8], ["none", "adaptive"], [0], 1440, EXTRA, out, out, tolerance=0.05,
                        log=lambda *a: None)
    return out, res


def test_recommends_more_echoing_for_a_slower_loader(small_grid):
    out, res = small_grid
    rec, g = res["recommendation"], res["grid"]
    assert g["ran"] == 4
    # R = 1: the pipeline is always ready, so adaptive is plain SGD, step for step: a tie, and the
    # least echoing level wins it.
    one = {lv: g["cells"][f"1|{lv}"] for lv in ("none", "adaptive")}
    assert one["none"]["time"] == one["adaptive"]["time"] is not None
    assert rec["1"]["level"] == "none" and rec["1"]["steps_per_load"] == 1.0
    # R = 8: adaptive takes 8 steps per fresh batch and reaches the target sooner in simulated time.
    assert g["cells"]["8|adaptive"]["steps_per_load"] == pytest.approx(8, abs=1)
    assert rec["8"]["level"] == "adaptive"
    assert rec["8"]["steps_per_load"] > rec["1"]["steps_per_load"]
    assert rec["8"]["speedup"] > 1
    md = (out / "advice.md").read_text()
    assert "| 8 |" in md and "adaptive" in md
    assert (out / "heatmap.png").stat().st_size > 10_000
    assert json.loads((out / "grid.json").read_text())["recommendation"] == json.loads(json.dumps(rec))


def test_existing_runs_are_read_not_rerun(small_grid):
    out, res = small_grid
    again = advise.advise([1, 8], ["none", "adaptive"], [0], 1440, EXTRA, out, out, tolerance=0.05,
                          log=lambda *a: None)
    assert again["grid"]["ran"] == 0
    assert again["table"] == res["table"]


def test_time_to_target_agrees_with_the_records(small_grid):
    out, res = small_grid
    checked = 0
    for cell in res["grid"]["cells"].values():
        run_dir = Path(cell["seeds"][0]["dir"])
        recs = read_jsonl(run_dir / "metrics.jsonl")
        summary = json.loads((run_dir / "summary.json").read_text())
        hits = [i for i, r in enumerate(recs) if r["test_acc"] >= 0.9]
        reached = summary["target"]["reached"]
        assert summary["target"]["value"] == 0.9
        if not hits:
            assert reached is None
            continue
        first = recs[hits[0]]
        assert reached == {k: first[k] for k in ("example_loads", "step", "epoch", "wall_s", "sim_s")}
        assert all(r["test_acc"] < 0.9 for r in recs[:hits[0]])
        assert cell["seeds"][0]["reached"] == reached
        checked += 1
    assert checked >= 3


def test_bad_override_is_one_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        advise.main(["--ratios", "2", "--levels", "none", "--out", str(tmp_path), "--runs", str(tmp_path),
                     "--set", "hardware.step_s=-1"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "hardware.step_s" in err and "Traceback" not in err
