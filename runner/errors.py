"""The exceptions that cross module boundaries, in a leaf module so that data sets, models and
checkpoints can raise them without importing the schema or the trainer."""
from __future__ import annotations


class ConfigError(ValueError):
    """Input the user can fix (a bad value, missing files); the CLI prints it and exits with status 2."""


class Preempted(RuntimeError):
    """SIGTERM or SIGINT arrived; a checkpoint was written (exit status 143)."""


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""
