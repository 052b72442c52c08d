"""logger=wandb writes an offline W&B run whose history holds the same values as metrics.jsonl."""
from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import pytest

from runner.wandb_sink import numeric

from .conftest import read_records, run_inproc

wandb_pb = pytest.importorskip("wandb.proto.wandb_internal_pb2")


def read_wandb_history(path: Path) -> list:
    """The history rows of a .wandb file. The file is a LevelDB-format log of protobuf Records
    (a 7-byte ':W&B' header, then 32 KiB blocks of chunks: crc32 u32, length u16, type u8 with
    1=full, 2=first, 3=middle, 4=last); wandb 0.31 has no Python reader of its own any more."""
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, pos, buf, rows = 32768, 7, b"", []
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a chunk header is padding
            pos += left
            continue
        _, n, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and n == 0:  # zeros: the rest of this block was padded at a flush
            pos += left
            continue
        pos += 7
        buf += data[pos:pos + n]
        pos += n
        if kind in (1, 4):
            rec = wandb_pb.Record()
            rec.ParseFromString(buf)
            buf = b""
            if rec.WhichOneof("record_type") == "history":
                rows.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.history.item})
    return rows


def test_offline_history_matches_jsonl(tmp_path, small_digits, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_DISABLE_GIT", "true")
    run_dir = tmp_path / "run"
    records, summary = run_inproc(run_dir, *small_digits, "logger=wandb", "name=wandb-test")
    assert summary["status"] == "complete"
    files = list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1, "exactly one offline run, inside the run directory"
    history = read_wandb_history(files[0])
    assert len(history) == len(records) >= 3
    for rec, row in zip(read_records(run_dir), history):
        assert row["_step"] == rec["step"]
        expect = numeric(rec)
        assert expect.keys() <= row.keys()
        for k, v in expect.items():
            assert row[k] == pytest.approx(v, rel=1e-12, abs=0), k
    # The loop's metrics really are in there (not only the clocks).
    assert {"test_acc", "train_loss", "example_loads", "p_load"} <= history[-1].keys()


def test_numeric_keeps_non_finite_and_drops_none():
    out = numeric({"step": 3, "train_loss": "nan", "test_loss": "inf", "sim_s": None, "ok": True})
    assert out["step"] == 3 and math.isnan(out["train_loss"]) and out["test_loss"] == math.inf
    assert "sim_s" not in out and "ok" not in out
