"""The step's arithmetic and the training clock: fp16 loss scaling, the device synchronised before
every read of the clock, deterministic kernels on request. (An fp16 run killed mid-run resumes with its
loss scaler exactly: tests/test_resume.py.)"""
from __future__ import annotations

import torch
from torch import nn

from runner.comm import Local
from runner.step import amp_context, grad_scaler, train_step
from runner.train import Timer
from tests.conftest import run_inproc

CPU = torch.device("cpu")


def first_layer_update(scaler: torch.amp.GradScaler) -> float:
    """One fp16 step of a model whose first layer's gradient (about 7e-9) is below fp16's smallest
    number (6e-8): small inputs, a small second layer."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(16, 16), nn.Linear(16, 4))
    with torch.no_grad():
        m[1].weight.mul_(1e-3)
    w0 = m[0].weight.detach().clone()
    opt = torch.optim.SGD(m.parameters(), lr=1.0)
    batch = [torch.randn(32, 16) * 1e-4, torch.randint(0, 4, (32,))]
    train_step(m, opt, scaler, batch, Local(m), amp_context("fp16", CPU), None)
    return (m[0].weight.detach() - w0).abs().max().item()


def test_fp16_scales_the_loss_so_that_small_gradients_do_not_underflow():
    assert first_layer_update(torch.amp.GradScaler("cpu", enabled=False)) == 0.0  # underflowed to zero
    scaler = grad_scaler("fp16", CPU)
    assert scaler.is_enabled() and first_layer_update(scaler) > 0
    assert not grad_scaler("bf16", CPU).is_enabled() and not grad_scaler("off", CPU).is_enabled()


def test_the_device_is_synchronised_before_every_read_of_the_training_clock():
    """A fake device whose queued work finishes only when synchronised: the clock advances by one
    at each sync, so the interval counts the work only if the sync comes before the read."""
    now = {"t": 0.0}

    def sync():
        now["t"] += 1.0

    timer = Timer(sync, clock=lambda: now["t"])
    timer.start()  # the work queued before training starts is not training time
    assert timer.t0 == 1.0
    assert timer.stop() == 1.0  # the work queued during training is


def test_deterministic_algorithms_on_request(tmp_path):
    from tests.helpers import DeterminismProbe

    args = ("model._target_=tests.helpers.DeterminismProbe", "budget.example_loads=64", "eval.every_loads=null",
            "model.width=4", "data.max_test_examples=32")
    DeterminismProbe.seen.clear()
    run_inproc(tmp_path / "a", *args, "train.deterministic=true")
    assert DeterminismProbe.seen and all(DeterminismProbe.seen)
    DeterminismProbe.seen.clear()
    run_inproc(tmp_path / "b", *args)
    assert DeterminismProbe.seen and not any(DeterminismProbe.seen)
