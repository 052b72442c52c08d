"""One training step and one evaluation: the arithmetic, apart from the loop's bookkeeping."""
from __future__ import annotations

import math
from contextlib import nullcontext
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F


def loss_fn(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the last dimension: classes, or the vocabulary at every position."""
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))


def amp_mode(t, device: torch.device) -> str:
    """off | bf16 | fp16: ``train.amp=auto`` is bf16 on a GPU that supports it, off elsewhere."""
    if t.amp != "auto":
        return t.amp
    return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "off"


def amp_context(mode: str, device: torch.device):
    if mode == "off":
        return nullcontext
    dtype = torch.bfloat16 if mode == "bf16" else torch.float16
    return lambda: torch.autocast(device.type, dtype=dtype)


def grad_scaler(mode: str, device: torch.device) -> torch.amp.GradScaler:
    """Loss scaling for fp16, whose small gradients would otherwise underflow to zero; a pass-through
    otherwise (bf16 has fp32's range)."""
    return torch.amp.GradScaler(device.type, enabled=mode == "fp16")


def train_step(net, opt, scaler, batch, comm, amp, grad_clip) -> torch.Tensor:
    """One forward/backward; the optimizer steps unless gradients are still being accumulated."""
    x, y = batch
    with comm.backward_context():
        with amp():
            loss = loss_fn(net(x), y)
        scaler.scale(loss).backward()
    if comm.should_step():
        if grad_clip:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
    return loss.detach().float()


class Evaluation(NamedTuple):
    metrics: dict  # test_loss and test_acc (classification) or test_ppl (language)
    per_example: np.ndarray  # in test-set order: bool, right or not (classification); float32 loss (language)


@torch.no_grad()
def evaluate(model, batches, task: str, amp) -> Evaluation:
    """Test loss and accuracy (classification) or perplexity (language) over ``batches``, with the
    per-example results they are made of (whether each example was right, or each block's mean
    token loss), gathered on the device from the same forward passes and copied to the host once."""
    model.eval()
    sums, per = [], []
    n = 0
    for x, y in batches:
        with amp():
            logits = model(x).float()
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), reduction="none")
        sums.append(loss.sum())
        n += y.numel()
        if task == "classification":
            per.append(logits.argmax(-1) == y)
        else:
            per.append(loss.view(len(y), -1).mean(1))
    model.train()
    # One host copy for the whole test set; each batch's sum is float32 as before, added in float64.
    loss = torch.stack(sums).cpu().double().sum().item() / n
    per_example = torch.cat(per).cpu().numpy()
    if task == "classification":
        return Evaluation({"test_loss": loss, "test_acc": int(per_example.sum()) / n}, per_example)
    return Evaluation({"test_loss": loss, "test_ppl": math.exp(min(loss, 50.0))}, per_example)
