"""The wheel, as a new user gets it: built from the project, installed (not editable) into a folder of its
own, and run from a directory outside the repository, where it composes its shipped configs, picks up the
user's own ./conf/, writes its measured profile and its run under the working directory, and writes
nothing into the installed package.

The installed copy is put first on the path with PYTHONPATH, before the venv's site-packages (torch and
the other dependencies come from there; the checkout's editable finder comes after the path, so it cannot
win); the test checks which ``runner`` those processes import.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
# What a user's checkout may hold in conf/ that is theirs, not echo-run's: never shipped.
USERS_OWN = ("hardware/measured_mine.yaml", "hardware/fmnist_mine.yaml", "local/default.yaml")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built offline from a copy of the project (a build writes build/ and *.egg-info beside
    pyproject.toml: not into the checkout). The copy's conf/ also holds a measured profile and a
    conf/local/ file, as a user's checkout may."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("runner", "conf"):
        shutil.copytree(REPO / name, src / name, ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for rel in USERS_OWN:
        (src / "conf" / rel).write_text("name: mine\n")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-index", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp / "dist"), str(src)], check=True, capture_output=True, timeout=240)
    (found,) = (tmp / "dist").glob("echo_run-*.whl")
    return found


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site") / "T"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target", str(target),
                    str(wheel)], check=True, capture_output=True, timeout=240)
    return target


def test_the_wheel_ships_every_module_and_every_shipped_config_and_none_of_the_users(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {f"runner/{p.relative_to(REPO / 'runner').as_posix()}" for p in (REPO / "runner").rglob("*.py")
               if "__pycache__" not in p.parts}
    configs = {f"runner/conf/{p.relative_to(REPO / 'conf').as_posix()}" for p in (REPO / "conf").rglob("*.yaml")
               if not re.fullmatch(r"hardware/(measured|fmnist).*|local/.*", p.relative_to(REPO / "conf").as_posix())}
    shipped = {n for n in names if n.startswith("runner/")}
    assert shipped == modules | configs, (sorted(modules | configs - shipped), sorted(shipped - modules - configs))
    assert "runner/conf/config.yaml" in shipped and "runner/conf/model/cnn.yaml" in shipped


def _files(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file()}


def test_an_installed_echo_run_trains_from_a_directory_of_its_own(installed, tmp_path):
    """measure, then a run that selects the user's own preset and model and the measured profile: all
    under the working directory, nothing into the installed package."""
    work = tmp_path / "work"
    (work / "conf" / "experiment").mkdir(parents=True)
    (work / "conf" / "model").mkdir()
    # The user's own preset (experiment=mine) and model (model=mynet) in ./conf/.
    (work / "conf" / "experiment" / "mine.yaml").write_text(
        "# @package _global_\nbudget:\n  steps: 3\n  example_loads: null\neval:\n  every_loads: null\n")
    (work / "conf" / "model" / "mynet.yaml").write_text("_target_: runner.models.SmallCNN\nwidth: 4\n")
    env = {**os.environ, "PYTHONPATH": str(installed), "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1"}
    before = _files(installed)

    def run(*cmd, timeout=240):
        p = subprocess.run(list(cmd), cwd=work, env=env, capture_output=True, text=True, timeout=timeout)
        assert p.returncode == 0, p.stderr[-3000:]
        return p

    where = run(sys.executable, "-c", "import runner, runner.config as c; print(runner.__file__); print(c.CONF_DIR)")
    module, conf = where.stdout.split()
    assert Path(module) == installed / "runner" / "__init__.py" and Path(conf) == installed / "runner" / "conf"

    workload = ["model=mynet", "train.threads=1"]
    run(str(installed / "bin" / "echo-advise"), "measure", *workload, "--windows", "1", "--window-s", "0.05",
        "--steps", "2")
    profile = work / "conf" / "hardware" / "measured.yaml"
    measured = yaml.safe_load(profile.read_text())

    p = run(str(installed / "bin" / "echo-run"), "experiment=mine", *workload, "hardware=measured",
            "logger.progress=false")
    (run_dir,) = [Path(m) for m in re.findall(r"echo-run: records in (\S+)", p.stdout)]
    assert run_dir.is_relative_to(work / "results" / "runs")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["final"]["step"] == 3  # the user's preset: 3 steps
    cfg = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    assert cfg["model"]["width"] == 4  # the user's model
    assert cfg["hardware"]["name"] == "measured" and cfg["hardware"]["step_s"] == measured["step_s"]
    assert _files(installed) == before
