"""The worker that torchrun starts on every rank: ``python -m runner.worker <run_dir>/.hydra/config.yaml``.

It reads the resolved config that the ``echo-run`` process wrote once and trains in that run
directory; it never composes the config again, so every rank (and every restart) runs exactly
what the user asked for. Run alone (no ``RANK`` in the environment) it trains as one process.
Exit status: 0 done (the summary says complete or diverged); 143 stopped by a signal after writing a
checkpoint (torchrun's ``--max-restarts`` then restarts it, and it resumes); 2 bad input (missing data,
no readable checkpoint left, a full disk: the paragraph goes to ``<run dir>/.refused.rank<k>`` for the
``echo-run`` process to print and exit 2 with); other: an error, with its traceback (an error in the
user's own data set or model among them), which torchrun's failure summary shows as the root cause.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from omegaconf import OmegaConf
from torch.distributed.elastic.multiprocessing.errors import record


def say(line: str) -> None:
    """Write one line to stderr in one system call: the ranks share torchrun's stderr, and print()'s
    separate write of the newline let two ranks' lines run into one."""
    sys.stderr.flush()
    os.write(sys.stderr.fileno(), (line + "\n").encode())


@record  # torchrun's failure summary then shows this rank's traceback as the root cause
def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) != 1 or not Path(args[0]).is_file():
        print("usage: python -m runner.worker <run_dir>/.hydra/config.yaml (a config written by echo-run)",
              file=sys.stderr)
        return 2
    from . import dist
    from .errors import ConfigError
    from .train import Preempted, run

    path = Path(args[0]).resolve()
    cfg = OmegaConf.load(path)
    try:
        run(cfg, path.parent.parent)
    except Preempted as e:
        say(f"echo-run worker: {e}")
        return 143
    except ConfigError as e:
        # Bad input is one paragraph and exit status 2 under torchrun too, not a rank's traceback.
        rank = os.environ.get("RANK", "0")
        (path.parent.parent / f".refused.rank{rank}").write_text(str(e))
        say(f"echo-run worker: rank {rank}: {e}")
        return 2
    dist.shutdown()  # only after success: a dead peer could make the teardown wait
    return 0


if __name__ == "__main__":
    sys.exit(main())
