"""echo-run as a user runs it: a subprocess, on both embedded data sets, and its refusals."""
import json

import pytest

from tests.conftest import cli, cli_inproc


@pytest.mark.slow
def test_digits_end_to_end(tmp_path):
    out = cli(f"hydra.run.dir={tmp_path}", "budget.example_loads=640", "eval.every_loads=320")
    assert out.returncode == 0, out.stderr
    recs = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((tmp_path / "summary.json").read_text())
    # records at 0, 320 and 640 loads; echo steps after the last load (cosine echoing) end with one more
    assert [r["example_loads"] for r in recs][:3] == [0, 320, 640] and recs[-1]["example_loads"] == 640
    assert len(recs) in (3, 4) and recs[-1]["step"] >= recs[2]["step"]
    assert summary["status"] == "complete" and summary["final"] == recs[-1]
    assert (tmp_path / ".hydra" / "config.yaml").exists()


@pytest.mark.slow
def test_python_docs_end_to_end(tmp_path):
    out = cli(f"hydra.run.dir={tmp_path}", "dataset=python_docs", "budget.example_loads=48",
              "eval.every_loads=null", "data.max_test_examples=32")
    assert out.returncode == 0, out.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["final"]["example_loads"] == 48 and summary["final"]["test_ppl"] > 1


@pytest.mark.slow
def test_rerun_of_a_complete_run_changes_nothing(tmp_path):
    args = (f"hydra.run.dir={tmp_path}", "budget.example_loads=320", "eval.every_loads=null")
    assert cli(*args).returncode == 0
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    again = cli(*args)
    assert again.returncode == 0 and "already holds this run" in again.stderr
    assert before == {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}


@pytest.mark.parametrize("arg, says", [
    ("schedule.p=1.5", "schedule.p=1.5"),
    ("optim.lr=-1", "optim.lr=-1"),
    ("no_such_option=1", "no_such_option"),
    ("schedule=bogus", "bogus"),
    ("optim.lr=fast", "optim.lr"),
])
@pytest.mark.slow
def test_bad_values_exit_2_with_a_reason_and_no_traceback(tmp_path, arg, says):
    out = cli(f"hydra.run.dir={tmp_path}/run", arg)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert says in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("echo-run: error:")
    assert not (tmp_path / "run").exists()


def test_help_exits_0_and_starts_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where the default run directory (results/...) would be created
    code, err = cli_inproc("--help")
    assert code == 0, err
    assert list(tmp_path.iterdir()) == []
