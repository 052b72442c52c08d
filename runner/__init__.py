"""echo-run: an experiment runner for data echoing, alone and in data-parallel training."""
__version__ = "0.1.0"
