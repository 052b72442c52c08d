"""Docs that cannot rot: every command and code block of README.md and docs/*.md is run here or
marked illustrative (docs/development.md, "The docs").

The line before a fenced ``bash``, ``sh``, ``console`` or ``python`` block must be one of
``<!-- test -->`` (run here), ``<!-- test: write FILE -->`` (written to FILE for the blocks after it)
or ``<!-- illustrative -->`` (not run). The blocks to run of one file run in order in one fresh
directory, as shown: nothing is appended to a documented command, so the commands meant to run carry
their own small budgets in the text.
"""
from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CHECKED = {"bash", "sh", "console", "python"}
RUNNABLE = {"bash", "sh", "python"}
MARK = re.compile(r"<!-- (test|test: write (\S+)|illustrative) -->")
FENCE = re.compile(r"(`{3,})\s*([\w+-]*).*")
VERDICTS = ("holds", "does not hold", "inconclusive", "not informative", "no records")  # a label may add "(...)"


@dataclass
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    lang: str
    mark: Optional[str]  # "test", "write" or "illustrative"; None when unmarked
    target: Optional[str]  # the file of a "write" block
    code: str

    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> List[Block]:
    """The fenced blocks of a Markdown page, each with the marker on the line before it."""
    lines = page.read_text(encoding="utf-8").splitlines()
    out, i = [], 0
    while i < len(lines):
        m = FENCE.fullmatch(lines[i])
        if not m:
            i += 1
            continue
        close = re.compile(re.escape(m.group(1)) + r"`*\s*")
        j = i + 1
        while j < len(lines) and not close.fullmatch(lines[j]):
            j += 1
        mk = MARK.fullmatch(lines[i - 1].strip()) if i > 0 else None
        mark = None if mk is None else ("write" if mk.group(2) else mk.group(1))
        out.append(Block(page, i + 1, m.group(2).lower(), mark, mk.group(2) if mk else None,
                         "\n".join(lines[i + 1:j]) + "\n"))
        i = j + 1
    return out


def _ids(pages):
    return [str(p.relative_to(ROOT)) for p in pages]


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_every_command_block_is_marked(page):
    found = blocks(page)
    unmarked = [b.where() for b in found if b.lang in CHECKED and b.mark is None]
    assert not unmarked, (
        "these blocks have neither <!-- test --> nor <!-- illustrative --> on the line before them: "
        + ", ".join(unmarked))
    bad = [b.where() for b in found if b.mark == "test" and b.lang not in RUNNABLE]
    assert not bad, f"<!-- test --> on a block that is neither bash nor python: {', '.join(bad)}"


def _env(tmp: Path) -> dict:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(ROOT), env.get("PYTHONPATH", "")] if p)
    env["OMP_NUM_THREADS"] = "1"  # tiny models: threads only contend on a shared machine
    env["MPLBACKEND"] = "Agg"
    env["ECHO_RUN_CACHE"] = str(tmp / ".cache")
    return env


RUN_PAGES = [p for p in PAGES if any(b.mark in ("test", "write") for b in blocks(p))]


@pytest.mark.slow
@pytest.mark.parametrize("page", RUN_PAGES, ids=_ids(RUN_PAGES))
def test_documented_examples_run(page, tmp_path):
    env = _env(tmp_path)
    for b in blocks(page):
        if b.mark == "write":
            path = tmp_path / b.target
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(b.code, encoding="utf-8")
            continue
        if b.mark != "test":
            continue
        cmd = [sys.executable, "-c", b.code] if b.lang == "python" else ["bash", "-e", "-o", "pipefail", "-c", b.code]
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, (f"the block at {b.where()} exited {r.returncode}\n--- code\n{b.code}"
                                   f"--- stdout\n{r.stdout[-3000:]}\n--- stderr\n{r.stderr[-3000:]}")


def test_readme_verdict_summary_matches_the_verdict_table():
    """Each row of the README's summary that lists claim ids and ends in a verdict agrees with
    results/figures/verdict.csv (written by `make verdict`), and every claim there is listed."""
    table = {r["id"]: r["claim_verdict"] for r in csv.DictReader(
        (ROOT / "results" / "figures" / "verdict.csv").open(encoding="utf-8"))}
    listed = {}
    for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip().strip("*") for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or cells[-1].split(" (")[0] not in VERDICTS:
            continue
        ids = [i.strip() for i in cells[-2].split(",")]
        if all(i in table for i in ids):
            listed.update({i: cells[-1] for i in ids})
    assert listed.keys() == table.keys(), f"claims missing from the README: {sorted(table.keys() - listed.keys())}"
    wrong = {i: (v, table[i]) for i, v in listed.items() if v != table[i]}
    assert not wrong, f"README verdict vs verdict.csv: {wrong}"
