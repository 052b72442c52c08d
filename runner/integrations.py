"""Echo counts in the logs of the trainers users already have: a Hugging Face ``TrainerCallback``
and a Lightning ``Callback`` that log ``example_loads``, ``echo_steps`` and ``echo_p`` (the
probability of loading at the last step) beside the loss, read from the ``EchoLoader`` the trainer
iterates over.

transformers and lightning are imported only when a callback is first used (``from
runner.integrations import HFEchoCallback``), so neither is needed for the other, nor for
``runner.echo``.
"""
from __future__ import annotations

from typing import Any, Dict

from .echo import EchoLoader

__all__ = ["HFEchoCallback", "LightningEchoCallback", "counts"]


def counts(loader: EchoLoader) -> Dict[str, float]:
    """What the callbacks log: the training's example loads and echo steps so far, and the last p."""
    return {"example_loads": loader.example_loads, "echo_steps": loader.echo_steps, "echo_p": loader.p}


def _not_echoing(where: str, got: Any) -> ValueError:
    return ValueError(f"the echo callback found {type(got).__name__} as {where}, not an EchoLoader: train on "
                      "EchoLoader(loader, ...) (see 'Echoing in your own trainer'), or remove the callback")


def _hf_callback():
    from transformers import TrainerCallback

    class HFEchoCallback(TrainerCallback):
        """Adds the echo counts to every log of a Hugging Face Trainer that has a loss (training
        logs), in ``trainer.state.log_history`` and for the callbacks after this one. The loader is
        the trainer's training dataloader (an EchoLoader, e.g. from ``get_train_dataloader``)."""

        def __init__(self):
            self.loader = None

        def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
            if not isinstance(train_dataloader, EchoLoader):
                raise _not_echoing("the Trainer's train_dataloader", train_dataloader)
            self.loader = train_dataloader

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.loader is None or logs is None or "loss" not in logs:
                return
            c = counts(self.loader)
            logs.update(c)
            # The Trainer appended a copy of these logs to the history before the callbacks ran.
            if state.log_history and state.log_history[-1].get("step") == state.global_step:
                state.log_history[-1].update(c)

    return HFEchoCallback


def _lightning_callback():
    from lightning.pytorch.callbacks import Callback

    class LightningEchoCallback(Callback):
        """Logs the echo counts at every training step with ``pl_module.log`` (so they are in
        ``trainer.callback_metrics`` and go to the trainer's logger beside the loss). The loader is
        the training dataloader given to ``trainer.fit`` (an EchoLoader)."""

        def __init__(self):
            self.loader = None

        def on_train_start(self, trainer, pl_module):
            dl = trainer.train_dataloader
            if not isinstance(dl, EchoLoader):
                raise _not_echoing("the trainer's train_dataloader", dl)
            self.loader = dl

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            for k, v in counts(self.loader).items():
                pl_module.log(k, float(v), on_step=True, on_epoch=False, batch_size=1)

    return LightningEchoCallback


_MAKERS = {"HFEchoCallback": _hf_callback, "LightningEchoCallback": _lightning_callback}
_MADE: Dict[str, type] = {}


def __getattr__(name: str):
    # The classes are made on first use: subclassing needs transformers' or lightning's base class.
    if name in _MAKERS:
        if name not in _MADE:
            _MADE[name] = _MAKERS[name]()
        return _MADE[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
