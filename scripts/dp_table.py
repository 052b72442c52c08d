"""The data-parallel communication table (README, issue 4) from finished runs; never trains.

Now ``echo-report dp DIR... [--out STEM]`` (Markdown + CSV); this script prints the same Markdown,
for ``make dp-table``. Usage: python scripts/dp_table.py DIR... (run directories or sweep
directories above them)
"""
from __future__ import annotations

import sys

from runner.report import ReportError, find_runs
from runner.report.tables import dp_frame, dp_markdown


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print(__doc__.strip().splitlines()[-2] + " " + __doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    try:
        print(dp_markdown(dp_frame(find_runs(args))))
    except ReportError as e:
        print(f"dp_table: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
