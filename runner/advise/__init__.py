"""The advisor, on the user's own workload and hardware: "my pipeline loads a batch in R step-times:
how much echoing should I use, and what will I gain?" Three steps, each a subcommand of
``echo-advise`` (``python -m runner.advise``):

    echo-advise measure   dataset=fashion_mnist data.workers=2      # R on this machine -> hardware=measured
    echo-advise recommend dataset=fashion_mnist data.workers=2      # pilot grid on the simulated clock
    echo-advise confirm   dataset=fashion_mnist data.workers=2      # SGD vs the recommendation, for real

Modules: ``measure`` (throughput, step time, all-reduce; the profile), ``allreduce`` (its torchrun
worker), ``profile`` (where the profile lives and whose it is), ``levels`` (echo levels and how much
each echoes), ``grid`` (the pilot's cells, found again by config hash), ``recommend`` (the monotone
recommendation, advice.md, heatmap), ``confirm`` (real runs against the prediction), ``cli`` (the
``echo-advise`` command, ``runner.advise.cli.main``; not loaded by this package).

The advisor starts runs through ``runner.runs`` and ``runner.config`` and decides from their records
(``summary.json``, ``metrics.jsonl``) only; it builds the pipeline, the model and the optimizer
itself only to measure them.
"""
