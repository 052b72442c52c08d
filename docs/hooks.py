"""MkDocs hooks (mkdocs.yml, ``hooks:``).

- ``<!-- cli: echo-run -->`` (or ``echo-advise recommend`` ...) in a page is replaced, at build
  time, by that command's ``--help`` output, so the command-line reference is always the code's.
- ``results/figures/*.png`` are added to the site at their repository paths, so the pages (and the
  verdict table included from ``results/figures/verdict.md``) link to them where they are.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from mkdocs.structure.files import File

CLI = re.compile(r"^<!-- cli: ((?:echo-run|echo-advise|echo-report)(?: [a-z-]+)?) -->$", re.M)  # alone on its line


def _command(name: str) -> str:
    """The console script installed beside this Python (the venv's), else the one on PATH."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if found is None:
        raise RuntimeError(f"docs: the command {name} is not installed (pip install -e .), needed for the CLI page")
    return found


def _help(words: str, cwd: str) -> str:
    name, *sub = words.split()
    env = dict(os.environ, COLUMNS="100")  # argparse wraps to the terminal's width: fix it
    out = subprocess.run([_command(name), *sub, "--help"], cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"docs: `{words} --help` exited {out.returncode}:\n{out.stderr}")
    return f"```text\n{out.stdout.rstrip()}\n```"


def on_page_markdown(markdown: str, page, config, files) -> str:
    cwd = str(Path(config.config_file_path).parent)
    return CLI.sub(lambda m: _help(m.group(1), cwd), markdown)


def on_files(files, config):
    root = Path(config.config_file_path).parent
    for png in sorted((root / "results" / "figures").glob("*.png")):
        files.append(File(png.relative_to(root).as_posix(), src_dir=str(root), dest_dir=config.site_dir,
                          use_directory_urls=config.use_directory_urls))
    return files
