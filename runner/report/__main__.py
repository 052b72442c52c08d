"""``python -m runner.report``: the same as ``echo-report``."""
import sys

from .cli import main

sys.exit(main())
