"""``echo-report``: figures and tables from run directories; it only reads them (never trains).

The package, along its jobs:
- ``runs``: finding run directories, the ``Run`` record, grouping (by method and world size);
- ``stats``: statistics over seeds (t and bootstrap intervals, paired comparisons, best lr);
- ``tables``: pandas tables written as Markdown and CSV;
- ``plots``: matplotlib figures;
- ``verdict``: the verdict table generated from a YAML spec of claims;
- ``cli``: the ``echo-report`` command (``runner.report.cli.main``; ``python -m runner.report``).

What another package uses (the advisor's heatmap, scripts/at_best_lr.py) is importable from here,
under public names; the package does not load its command line.
"""
from __future__ import annotations

from .plots import _plt as pyplot, _title as title  # public: the advisor's heatmap and the scripts draw with them
from .plots import (COLOURS, XS, YS, available, best_figs, claim_figs, clock_check_fig, colour,
                    curves_figs, ext, ideal, plot_methods, save)
from .runs import (Run, ReportError, default_metric, find_runs, finite, group, mode_of, reuses, series,
                   target_of, to_target)
from .stats import (Estimate, best_lr_at_equal_loads, bootstrap_interval, claim_points, mean_band,
                    paired_difference, paired_ratio, t_interval)
from .tables import lr_table, method_table, runs_frame, stats_frame, write_best_lr

__all__ = ["pyplot", "title", "COLOURS", "XS", "YS", "available", "best_figs", "claim_figs",
           "clock_check_fig", "colour", "curves_figs", "ext", "ideal", "plot_methods", "save", "Run",
           "ReportError", "default_metric", "find_runs", "finite", "group", "mode_of", "reuses", "series", "target_of",
           "to_target", "Estimate", "best_lr_at_equal_loads", "bootstrap_interval", "claim_points", "mean_band",
           "paired_difference", "paired_ratio", "t_interval", "lr_table", "method_table", "runs_frame",
           "stats_frame", "write_best_lr"]
