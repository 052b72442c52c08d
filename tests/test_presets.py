"""Experiment presets: every one composes and validates, so does every job of its sweep, each paper
preset has a small-scale `_smoke` twin on the embedded data, and every twin runs to completion."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from runner.config import CONF_DIR
from runner.schema import validate
from tests.conftest import cli, read_records

pytestmark = pytest.mark.slow  # processes and torchrun jobs: not in `make test-fast`

PRESETS = sorted(p.stem for p in (Path(CONF_DIR) / "experiment").glob("*.yaml"))
PAPER = [p for p in PRESETS if not p.endswith("_smoke")]
PAPER_DATA = {"cifar10", "cifar100", "wikitext2"}
EMBEDDED_DATA = {"digits", "python_docs"}
TINY = ("budget.example_loads=64", "eval.every_loads=null", "data.max_test_examples=64", "train.threads=1")


def compose_with_hydra(*overrides: str):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def sweep_jobs(cfg) -> list:
    """The override lists of the jobs ``echo-run -m experiment=...`` starts, from the preset's
    ``hydra.sweeper.params`` as Hydra's own parser reads them."""
    params = cfg.hydra.sweeper.params or {}
    parser = OverridesParser.create()
    axes = [[f"{k}={v}" for v in parser.parse_override(f"{k}={vals}").sweep_string_iterator()]
            for k, vals in params.items()]
    return [list(job) for job in itertools.product(*axes)]


def test_every_paper_preset_has_a_twin():
    assert PAPER and sorted(set(PRESETS) - set(PAPER)) == sorted(f"{p}_smoke" for p in PAPER)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_and_every_job_of_its_sweep_compose_and_validate(name):
    base = compose_with_hydra(f"experiment={name}")
    assert base.name == name and base.data.name in (EMBEDDED_DATA if name.endswith("_smoke") else PAPER_DATA)
    jobs = sweep_jobs(base)
    assert len(jobs) >= 2  # each figure compares methods
    for job in jobs:
        cfg = compose_with_hydra(f"experiment={name}", *job)
        cfg_job = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
        validate(cfg_job)
        for override in job:  # the swept value is the one the job runs with
            key, value = override.split("=", 1)
            got = OmegaConf.select(cfg, key)
            if OmegaConf.is_config(got):  # a config group: its yaml's name or target
                assert value in (got.get("name"), str(got.get("_target_", "")).rsplit(".", 1)[-1],
                                 f"{got.get('_target_', '').rsplit('.', 1)[-1]}_{got.get('size')}")
            else:
                assert str(got) == value


@pytest.mark.slow
def test_every_smoke_twin_runs_to_completion(tmp_path):
    """Every twin's base job, tiny, in one multirun (each as `echo-run experiment=<twin>` runs it)."""
    out = cli("experiment=glob(*_smoke)", f"hydra.sweep.dir={tmp_path}", *TINY, "-m", timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    for twin in (p for p in PRESETS if p.endswith("_smoke")):
        (run,) = [p.parent for p in (tmp_path / twin).rglob("summary.json")]
        summary = json.loads((run / "summary.json").read_text())
        recs = read_records(run)
        assert summary["status"] == "complete" and recs[-1]["example_loads"] >= 64
        assert OmegaConf.load(run / ".hydra" / "config.yaml").name == twin


@pytest.mark.slow
def test_a_twin_sweep_runs_every_job(tmp_path):
    """`echo-run -m experiment=<preset>` runs the preset's own sweep (hydra.sweeper.params)."""
    out = cli("experiment=fig7_gpt2_wikitext2_smoke", f"hydra.sweep.dir={tmp_path}", *TINY, "-m", timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    runs = [p.parent for p in (tmp_path / "fig7_gpt2_wikitext2_smoke").rglob("summary.json")]
    ran = {OmegaConf.load(r / ".hydra" / "config.yaml").schedule.name: r for r in runs}
    assert sorted(ran) == ["cosine", "none"] and len(runs) == 2
    for schedule, r in ran.items():
        assert f"schedule={schedule}" in r.name  # one directory per job, named by its overrides
        assert json.loads((r / "summary.json").read_text())["status"] == "complete"
    recs = {s: read_records(r)[-1] for s, r in ran.items()}
    assert recs["none"]["echo_steps"] == 0 and recs["none"]["example_loads"] == 64
