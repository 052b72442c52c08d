"""The layers of docs/architecture.md, as they show at run time: validating a config never loads the
advisor or the report, a package never loads its command line, ``python -m`` still runs both
commands, and no module uses another package's private names. (`lint-imports` in `make test`
checks the import graph itself against [tool.importlinter] in pyproject.toml.)"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from .conftest import ROOT

# In a fresh interpreter: compose and validate configs whose hardware profile carries a workload
# stamp (its own workload's, then another's), import both packages and list what got loaded, then
# run both commands as `python -m` does (exit statuses of --help and of an unknown subcommand).
PROBE = r"""
import contextlib, io, json, runpy, sys
from omegaconf import OmegaConf
from runner.config import compose
from runner.errors import ConfigError
from runner.workload import WORKLOAD_GROUPS, workload_hash

LAYERS = ("runner.advise", "runner.report", "runner.cli")
base = ["hardware=ratio", "hardware.ratio=2"]
cfg = compose(base)
own = workload_hash({k: OmegaConf.to_container(cfg[k], resolve=True) for k in WORKLOAD_GROUPS})
compose([*base, "+hardware.info={workload_hash:%s}" % own])
try:
    compose([*base, "data.batch_size=16", "+hardware.info={workload_hash:%s}" % own])
    refused = None
except ConfigError as e:
    refused = str(e)
after_validate = sorted(m for m in sys.modules if m.startswith(LAYERS))
import runner.advise, runner.report
after_import = sorted(m for m in sys.modules if m.startswith(LAYERS))
codes = {}
for pkg in ("runner.advise", "runner.report"):
    for arg in ("--help", "no-such-command"):
        sys.argv = [pkg, arg]
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            try:
                runpy.run_module(pkg, run_name="__main__", alter_sys=True)
                codes[f"{pkg} {arg}"] = 0
            except SystemExit as e:
                codes[f"{pkg} {arg}"] = e.code
print(json.dumps({"refused": refused, "after_validate": after_validate, "after_import": after_import,
                  "codes": codes}))
"""


def test_layers_at_run_time():
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["refused"] and "another workload" in r["refused"]  # the stamp is still checked
    assert r["after_validate"] == []  # validating loaded neither the advisor nor the report
    assert "runner.advise.cli" not in r["after_import"] and "runner.report.cli" not in r["after_import"]
    assert {"runner.advise", "runner.report"} <= set(r["after_import"])
    assert r["codes"] == {"runner.advise --help": 0, "runner.advise no-such-command": 2,
                          "runner.report --help": 0, "runner.report no-such-command": 2}


def _package(path: Path) -> str:
    """The dotted package a file belongs to (scripts/ are their own)."""
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1])


def _imported_from(node: ast.ImportFrom, pkg: str) -> str:
    if node.level == 0:
        return node.module or ""
    base = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def private_imports() -> list:
    """``from M import _name`` where M is another package's module than the importer's own package."""
    bad = []
    for path in sorted([*ROOT.glob("runner/**/*.py"), *ROOT.glob("scripts/*.py")]):
        pkg = _package(path)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.ImportFrom):
                continue
            src = _imported_from(node, pkg)
            if not src.startswith("runner"):
                continue
            src_pkg = src if (ROOT / src.replace(".", "/")).is_dir() else src.rpartition(".")[0]
            for a in node.names:
                if a.name.startswith("_") and not a.name.startswith("__") and src_pkg != pkg:
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: from {src} import {a.name}")
    return bad


def test_no_module_imports_another_packages_private_names():
    assert private_imports() == []
