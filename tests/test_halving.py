"""scripts/halving.py, the figures' successive halving: which rates (or outer settings) go on to the
next stage, on synthetic run directories in the real format whose scores are known by construction
(test_verdict.write_run: test accuracy rises linearly to 0.9 at T loads, then the last record's
``final``). The final choice (--complete) agrees with the verdict's rule,
runner.report.stats.best_lr_at_equal_loads."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from runner.report.runs import find_runs
from runner.report.stats import best_lr_at_equal_loads
from tests.test_verdict import write_run

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import halving  # noqa: E402


def stopped(d: Path, method: str = "sgd", **kw) -> Path:
    """A run stopped at a quarter of its 2,000-load budget (budget.stop_at=0.25): its last record is
    on the line, 0.1 + 0.8 * 500 / T."""
    write_run(d, method, end=500, status="stopped", final=0.1 + 0.8 * min(1.0, 500 / kw["T"]), **kw)
    s = json.loads((d / "summary.json").read_text())
    s["stopped_at_fraction"] = 0.25
    (d / "summary.json").write_text(json.dumps(s))
    return d


def halve(*args) -> tuple:
    p = subprocess.run([sys.executable, str(ROOT / "scripts" / "halving.py"), *map(str, args)],
                       capture_output=True, text=True, cwd=ROOT)
    return p.returncode, p.stdout.strip(), p.stderr


def test_stage_one_keeps_the_best_rates_at_a_quarter_of_the_budget(tmp_path):
    # Seed 0 at five rates, stopped at 500 loads: accuracy there is 0.1 + 0.8 * 500 / T.
    for lr, T in [(0.0125, 4000), (0.025, 2000), (0.05, 1000), (0.1, 1250), (0.2, 3000)]:
        stopped(tmp_path / f"lr{lr}", seed=0, lr=lr, T=T)
    write_run(tmp_path / "other-seed", seed=1, lr=0.0125, T=100)  # another seed: not scored
    assert halve(tmp_path, "--method", "sgd", "--seeds", "0", "--keep", "2") == (0, "optim.lr=0.05,0.1", "")
    assert halve(tmp_path, "--method", "sgd", "--seeds", "0", "--keep", "1")[1] == "optim.lr=0.05"
    # Only finished runs may be chosen at the end: none of seed 0's is.
    code, out, err = halve(tmp_path, "--method", "sgd", "--seeds", "0", "--complete")
    assert code == 2 and out == "" and "diverged or has not run to this stage" in err


def test_a_diverged_or_unstarted_rate_ranks_last(tmp_path):
    stopped(tmp_path / "a", seed=0, lr=0.05, T=1000)
    write_run(tmp_path / "b", seed=0, lr=0.1, T=400, end=500, status="diverged")
    write_run(tmp_path / "c", seed=0, lr=0.2, T=300, end=300, status="incomplete")
    stopped(tmp_path / "d", seed=0, lr=0.025, T=2000)
    assert halve(tmp_path, "--method", "sgd", "--seeds", "0", "--keep", "3")[1] == "optim.lr=0.025,0.05"


def test_the_final_choice_agrees_with_the_verdicts_rule(tmp_path):
    # Two finalists on seeds 0 and 1 at the full budget; a stopped loser; the verdict's rule picks
    # among complete rates at equal loads, and so must halving --complete.
    stopped(tmp_path / "loser", seed=0, lr=0.2, T=200)
    finals = {(0.05, 0): 0.93, (0.05, 1): 0.95, (0.1, 0): 0.95, (0.1, 1): 0.96}
    for (lr, s), f in finals.items():
        write_run(tmp_path / f"lr{lr}-s{s}", seed=s, lr=lr, T=1000, final=f)
    runs = find_runs([tmp_path])
    ref = best_lr_at_equal_loads(runs, "test_acc", "max", seeds=[0, 1])
    assert ref["lr"] == 0.1 and ref["grid"] == [0.05, 0.1, 0.2] and not ref["edge"]
    assert halve(tmp_path, "--method", "sgd", "--seeds", "0,1", "--complete") == (0, "optim.lr=0.1", "")
    # Without --complete the stopped 0.2 is scored at the loads every run reached (500): it leads.
    assert halve(tmp_path, "--method", "sgd", "--seeds", "0,1")[1] == "optim.lr=0.2"


def test_runs_that_stop_at_their_target_rank_by_loads_to_it(tmp_path):
    stop = {"target.stop": True}
    write_run(tmp_path / "slow", seed=0, lr=0.0125, T=1800, **stop)
    write_run(tmp_path / "fast", seed=0, lr=0.05, T=700, **stop)
    write_run(tmp_path / "mid", seed=0, lr=0.1, T=900, **stop)
    write_run(tmp_path / "miss", seed=0, lr=0.2, T=None, final=0.85, **stop)  # never reaches 0.9: infinite loads
    assert halve(tmp_path, "--method", "sgd", "--seeds", "0", "--keep", "2")[1] == "optim.lr=0.05,0.1"
    runs = find_runs([tmp_path])
    assert halving.scores(runs, ["optim.lr"], "test_acc", complete=True) == {
        (0.0125,): -1800.0, (0.05,): -700.0, (0.1,): -900.0, (0.2,): -float("inf")}


def test_several_keys_print_one_setting_as_overrides(tmp_path):
    for olr, mom, T in [(0.4, 0.8, 1500), (0.7, 0.9, 900), (1.0, 0.9, 1200)]:
        for s in (0, 1):
            stopped(tmp_path / f"o{olr}-m{mom}-s{s}", "cosine+on_load", seed=s, T=T + 50 * s,
                    **{"comm.outer_lr": olr, "comm.outer_momentum": mom})
    args = (tmp_path, "--method", "cosine+on_load", "--seeds", "0,1", "--key", "comm.outer_lr", "comm.outer_momentum")
    assert halve(*args) == (0, "comm.outer_lr=0.7 comm.outer_momentum=0.9", "")
    code, _, err = halve(*args, "--keep", "2")
    assert code == 2 and "--keep 1" in err


def test_no_run_of_the_method_is_a_one_paragraph_error(tmp_path):
    write_run(tmp_path / "a", seed=0)
    code, out, err = halve(tmp_path, "--method", "cosine", "--seeds", "0")
    assert code == 2 and out == ""
    assert "no run of 'cosine' with seed 0" in err and "methods there: sgd" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("bad", [["--seeds", "zero"]])
def test_bad_seeds_exit_2(tmp_path, bad):
    write_run(tmp_path / "a", seed=0)
    code, _, err = halve(tmp_path, "--method", "sgd", *bad)
    assert code == 2 and err.startswith("halving:")
