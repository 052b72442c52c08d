"""EchoLoader where users train: a plain loop, a Hugging Face Trainer (the get_train_dataloader
recipe) and Lightning, each on tiny data with a tiny model of its own. Batch echoing x2 over N
steps reads N/2 batches of examples (counted at the data set), the trainer takes N steps, and the
callbacks of runner.integrations put the echo counts in the trainer's logs. (The code blocks of
docs/trainers.md run in tests/test_docs.py; that importing runner.echo and runner.integrations
imports neither transformers nor lightning is tested in tests/test_echo_loader.py, in a fresh Python.)"""
import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from runner.echo import EchoLoader

B, N = 4, 10  # batch size, training steps


class Counted(Dataset):
    """64 examples of 4 features; counts the examples read."""

    def __init__(self, as_dict: bool = False):
        g = torch.Generator().manual_seed(0)
        self.x, self.as_dict, self.reads = torch.randn(64, 4, generator=g), as_dict, 0

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        self.reads += 1
        y = (self.x[i].sum() > 0).long()
        return {"x": self.x[i], "labels": y} if self.as_dict else (self.x[i], y)


def test_plain_loop():
    ds = Counted()
    model = nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = EchoLoader(DataLoader(ds, batch_size=B, shuffle=True), policy="batch", factor=2)
    updates = 0
    for x, y in loader:
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        updates += 1
        if updates == N:
            break
    assert ds.reads == N // 2 * B
    assert (loader.steps, loader.example_loads, loader.echo_steps) == (N, N // 2 * B, N // 2)


def expected_log(step: int) -> dict:
    """Batch echoing x2: steps 1, 3, 5, ... load; the others echo."""
    return {"example_loads": math.ceil(step / 2) * B, "echo_steps": step // 2, "echo_p": float(step % 2)}


@pytest.mark.slow  # transformers' Trainer takes seconds to import
def test_hugging_face_trainer(tmp_path):
    from transformers import Trainer, TrainingArguments

    from runner.integrations import HFEchoCallback

    class EchoTrainer(Trainer):
        def get_train_dataloader(self):
            return EchoLoader(super().get_train_dataloader(), policy="batch", factor=2)

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 2)

        def forward(self, x, labels=None):
            return {"loss": nn.functional.cross_entropy(self.lin(x), labels)}

    ds = Counted(as_dict=True)
    args = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=N, per_device_train_batch_size=B,
                             logging_steps=5, save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True)
    trainer = EchoTrainer(model=Tiny(), args=args, train_dataset=ds, callbacks=[HFEchoCallback()])
    trainer.train()
    assert trainer.state.global_step == N
    assert ds.reads in (N // 2 * B, N // 2 * B + B)  # accelerate's loader reads one batch ahead
    logged = [{k: h[k] for k in ("step", "example_loads", "echo_steps", "echo_p")}
              for h in trainer.state.log_history if "loss" in h]
    assert logged == [{"step": s, **expected_log(s)} for s in (5, 10)]

    # Without an EchoLoader to read, the callback says so instead of logging nothing.
    plain = Trainer(model=Tiny(), args=args, train_dataset=ds, callbacks=[HFEchoCallback()])
    with pytest.raises(ValueError, match="not an EchoLoader"):
        plain.train()


@pytest.mark.slow  # lightning takes seconds to import
def test_lightning():
    import lightning.pytorch as pl

    from runner.integrations import LightningEchoCallback

    class Tiny(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 2)
            self.batches = 0

        def training_step(self, batch, batch_idx):
            x, y = batch
            self.batches += 1
            loss = nn.functional.cross_entropy(self.lin(x), y)
            self.log("loss", loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    ds, model = Counted(), Tiny()
    loader = EchoLoader(DataLoader(ds, batch_size=B), policy="batch", factor=2)
    trainer = pl.Trainer(max_steps=N, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[LightningEchoCallback()])
    trainer.fit(model, train_dataloaders=loader)
    assert trainer.global_step == N and model.batches == N
    assert ds.reads in (N // 2 * B, N // 2 * B + B)  # Lightning may fetch one batch ahead
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k != "loss"}
    assert metrics == expected_log(N) and "loss" in trainer.callback_metrics
