"""The exceptions that cross module boundaries, in a leaf module so that data sets, models and
checkpoints can raise them without importing the schema or the trainer."""
from __future__ import annotations


class ConfigError(ValueError):
    """Input the user can fix (a bad value, missing files, an unknown name, choices that do not fit
    together); the CLI prints it and exits with status 2. Never for an error raised by the user's own
    code (a data set or model that fails while imported or built): that keeps its type and traceback."""


class Preempted(RuntimeError):
    """SIGTERM or SIGINT arrived; a checkpoint was written (exit status 143)."""


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


def unwrapped(e: BaseException) -> BaseException:
    """What Hydra's ``InstantiationException`` wraps (the error the user's target raised), to be
    raised as itself with its own traceback: ``raise unwrapped(e)``. ``e`` itself when it wraps nothing."""
    cause = e.__cause__
    if cause is None:
        return e
    cause.__suppress_context__ = True  # the wrapper adds only its message
    return cause
