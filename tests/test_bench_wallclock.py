"""scripts/bench_wallclock.py picks its rates from the committed speed-up table, a short pilot for what
the table lacks, or stops with one paragraph (exit 2): never from runs only `make figures` writes."""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from runner.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
COLS = "reuse,method,lr,seeds,example_loads,sim_s,sim_s_note,speedup"
# The table's shape (results/figures/speedup.csv); p = 0.125 missed the target on a seed (NaN).
TABLE = [COLS, "1.0,sgd,0.1,3,17066,10.7,,1.0", "2.0,constant(p=0.5),0.025,3,15786,9.9,,1.08",
         "4.0,constant(p=0.25),0.05,3,11946,8.7,,1.45",
         "8.0,constant(p=0.125),0.0125,3,13653,,not reached by 1 of 3 seeds,",
         "4.0,cosine,0.2,3,9000,1.0,,9.9"]  # not a constant p: never chosen
DIGITS = ["model.width=8", "target.value=0.9", "budget.example_loads=14370"]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_wallclock", ROOT / "scripts" / "bench_wallclock.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def write(tmp_path: Path, rows) -> Path:
    p = tmp_path / "speedup.csv"
    p.write_text("\n".join(rows) + "\n")
    return p


def no_pilot(*a, **k):
    raise AssertionError("the pilot ran although the table had every rate")


def test_the_committed_table_gives_sgds_rate_and_the_fastest_level(bench, tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "pilot_rates", no_pilot)
    csv = write(tmp_path, TABLE)
    got = bench.pick_rates(csv, {}, 4.0, DIGITS, tmp_path, fraction=0.5)
    assert (got["sgd_lr"], got["p"], got["p_lr"]) == (0.1, 0.25, 0.05)
    assert got["source"]["sgd_lr"] == got["source"]["p_lr"] == str(csv)
    # A given level takes its own row's rate; a given rate wins over the table's.
    got = bench.pick_rates(csv, {"p": 0.5, "sgd_lr": 0.2}, 4.0, DIGITS, tmp_path, fraction=0.5)
    assert (got["sgd_lr"], got["p"], got["p_lr"]) == (0.2, 0.5, 0.025) and got["source"]["sgd_lr"] == "given"
    # Everything given: the table is not read (it need not exist).
    got = bench.pick_rates(tmp_path / "nowhere.csv", {"sgd_lr": 0.1, "p": 0.25, "p_lr": 0.05}, 4.0, DIGITS, tmp_path,
                           None)
    assert (got["sgd_lr"], got["p"], got["p_lr"]) == (0.1, 0.25, 0.05)
    # The repository's own table (results/figures/speedup.csv is committed) has every rate.
    got = bench.pick_rates(ROOT / "results" / "figures" / "speedup.csv", {}, 4.0, DIGITS, tmp_path, 0.5)
    assert None not in (got["sgd_lr"], got["p"], got["p_lr"]) and 0 < got["p"] < 1


def test_what_the_table_lacks_comes_from_the_pilot(bench, tmp_path, monkeypatch):
    asked = []

    def pilot(workload, R, levels, out, fraction, log=print):
        asked.append((R, levels, out, fraction))
        return {lv: {"none": 0.4, "p=0.5": 0.3}[lv] for lv in levels}

    monkeypatch.setattr(bench, "pilot_rates", pilot)
    no_echo = write(tmp_path, TABLE[:2])  # plain SGD only
    got = bench.pick_rates(no_echo, {}, 2.0, DIGITS, tmp_path, fraction=0.25, log=lambda *a: None)
    assert (got["sgd_lr"], got["p"], got["p_lr"]) == (0.1, 0.5, 0.3)  # p = 1/R; its rate from the pilot
    assert asked == [(2.0, ["p=0.5"], tmp_path / "pilot", 0.25)] and got["source"]["p_lr"].startswith("pilot")
    asked.clear()
    got = bench.pick_rates(tmp_path / "nowhere.csv", {"p": 0.5}, 4.0, DIGITS, tmp_path, 0.25, log=lambda *a: None)
    assert (got["sgd_lr"], got["p_lr"]) == (0.4, 0.3) and asked[0][1] == ["none", "p=0.5"]


@pytest.mark.parametrize("rows, says", [
    (None, "there is no"),
    (["reuse,lr", "1.0,0.1"], "has no column method, sim_s"),
    (TABLE[:1] + TABLE[2:], "has no row of plain SGD"),
])
def test_neither_table_nor_pilot_is_one_paragraph_and_exit_2(bench, tmp_path, capsys, rows, says):
    csv = tmp_path / "speedup.csv" if rows is None else write(tmp_path, rows)
    with pytest.raises(ConfigError, match=r"^plain SGD's learning rate.*: not given, and not in the speed-up tab") as e:
        bench.pick_rates(csv, {}, 4.0, DIGITS, tmp_path, None)
    assert says in str(e.value) and "--no-pilot" in str(e.value)
    code = bench.main(["--rates-csv", str(csv), "--no-pilot", "--out", str(tmp_path / "out"), "--", *DIGITS])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("bench_wallclock: error: plain SGD's learning rate") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()  # nothing ran


def test_a_pilot_that_cannot_run_is_one_paragraph(bench, tmp_path):
    with pytest.raises(ConfigError, match="the short pilot that would find them cannot run: the data set digits has no "
                                          "target") as e:
        bench.pick_rates(tmp_path / "nowhere.csv", {}, 4.0, ["model.width=8", "target.value=null"], tmp_path, 0.5,
                         log=lambda *a: None)
    assert "--sgd-lr" in str(e.value)


def test_the_short_pilot_on_digits(bench, tmp_path, monkeypatch):
    """The advisor's successive halving at R = 4, seed 0, on a tenth of digits' budget: 3 rates of plain SGD
    to 1/3 of it, the best to all of it; the rate picked is the one its rung ranked first. The runs do not
    train (tests/test_advise_rates.py's stand-in: plain SGD is fastest at lr 0.1)."""
    import runner.runs
    from tests.test_advise_rates import fake_run_once

    made: list = []
    monkeypatch.setattr(runner.runs, "run_once", fake_run_once(1.0, made))
    lines = []
    got = bench.pilot_rates([*DIGITS, "target.stop=true"], 4.0, ["none"], tmp_path / "pilot", 0.1, lines.append)
    g = json.loads((tmp_path / "pilot" / "grid.json").read_text())
    t = g["trials"]["4|none"]
    assert got == {"none": 0.1} == {"none": t["chosen"]} and t["tried"] == [0.025, 0.05, 0.1]
    assert t["rungs"][0]["kept"] == [0.1] and sorted((m["lr"], m["seed"]) for m in made) == [
        (0.025, 0), (0.05, 0), (0.1, 0), (0.1, 0)]
    assert len(list((tmp_path / "pilot" / "runs").iterdir())) == 4 and "4 runs (0 found done" in lines[0]
    assert math.isclose(g["cells"]["4|none|0"]["lr"], got["none"])
    # Found again, not re-run.
    assert bench.pilot_rates([*DIGITS, "target.stop=true"], 4.0, ["none"], tmp_path / "pilot", 0.1, lines.append) == got
    assert "4 runs (4 found done" in lines[-1] and len(list((tmp_path / "pilot" / "runs").iterdir())) == 4
