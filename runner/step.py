"""One training step and one evaluation: the arithmetic, apart from the loop's bookkeeping."""
from __future__ import annotations

import math
from contextlib import nullcontext

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


@torch.no_grad()
def evaluate(model, batches, task: str, amp) -> dict:
    """Test loss and accuracy (classification) or perplexity (language) over ``batches``."""
    model.eval()
    total, correct, n = 0.0, 0, 0
    for x, y in batches:
        with amp():
            logits = model(x).float()
        total += F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), reduction="sum").item()
        n += y.numel()
        if task == "classification":
            correct += (logits.argmax(-1) == y).sum().item()
    model.train()
    loss = total / n
    if task == "classification":
        return {"test_loss": loss, "test_acc": correct / n}
    return {"test_loss": loss, "test_ppl": math.exp(min(loss, 50.0))}
