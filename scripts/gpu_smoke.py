"""`make gpu-smoke`: echo-run's GPU path on one GPU in a few minutes, written to results/bench/gpu.json.

1. ResNet-18 (small-input stem) at batch 128, bf16 autocast, channels_last: the step time (forward,
   backward, SGD on a batch already on the GPU, synchronised, median of repeats), without and with
   torch.compile;
2. an image folder of JPEGs (written here from random pixels, 64x64, decoded and cropped to 32x32 in
   the workers): the pipeline's throughput with 2 and with 8 workers (examples/s, the GPU idle);
3. plain SGD and each echo policy (stochastic, batch, example, adaptive) behind 2 workers (the
   pipeline the bottleneck): the share of training time each waited for data (idle_s / wall_s) and
   its steps per fresh batch;
4. a one-GPU torchrun job with NCCL (process group, training, records).

CI never runs it. ``--cpu`` runs the same code on the CPU at a tiny size, to check the script itself.
Usage: python scripts/gpu_smoke.py [--cpu] [--out results/bench/gpu.json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from runner import accel, config, data, parts, runs, summary
from runner.comm import Local
from runner.metrics import read_jsonl
from runner.step import train_step

ROOT = Path(__file__).resolve().parent.parent


def write_jpegs(root: Path, classes: int, per_class: int, size: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("val", max(2, per_class // 16))):
        for c in range(classes):
            d = root / split / f"c{c}"
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(d / f"{i}.jpg", quality=90)


def workload(root: Path, dev: torch.device, batch: int, *overrides: str):
    """The smoke's workload as echo-run composes it: ResNet-18 on the JPEG folder at 32x32, on ``dev``."""
    return config.compose(["dataset=image_folder", f"data.root={root}", "data.image_size=32",
                           f"data.batch_size={batch}", "model=resnet18", "data.max_test_examples=256",
                           "logger.progress=false", f"train.device={dev.type}", *overrides])


def step_time(root: Path, dev: torch.device, batch: int, compile_: bool, repeats: int, steps: int) -> dict:
    """Median seconds per step of ResNet-18 on a batch already on ``dev``, built as the trainer builds
    it (runner.parts: bf16 autocast on a GPU, channels_last)."""
    amp_mode = "bf16" if dev.type == "cuda" else "off"
    cfg = workload(root, dev, batch, f"train.amp={amp_mode}", f"train.compile={str(compile_).lower()}")
    splits = data.build(cfg.data)
    torch.manual_seed(0)
    model = parts.model(cfg, splits.info, dev)
    net, opt = accel.compile_net(model, cfg.train), parts.optimizer(cfg, model)
    amp, scaler = parts.precision(cfg.train, dev)
    comm = Local(model)
    cl = accel.uses_channels_last(cfg.train, dev, splits.info)
    x = torch.randn(batch, 3, 32, 32, device=dev)
    x = x.contiguous(memory_format=torch.channels_last) if cl else x
    b = [x, torch.randint(0, splits.info["num_classes"], (batch,), device=dev)]
    t0 = time.perf_counter()
    for _ in range(3):  # warm-up (and compilation)
        train_step(net, opt, scaler, b, comm, amp, None)
    accel.sync(dev)
    warm = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        accel.sync(dev)
        t0 = time.perf_counter()
        for _ in range(steps):
            train_step(net, opt, scaler, b, comm, amp, None)
        accel.sync(dev)
        times.append((time.perf_counter() - t0) / steps)
    return {"compile": compile_, "amp": amp_mode, "channels_last": cl, "batch": batch,
            "median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "warmup_s": warm}


def loader_throughput(root: Path, dev: torch.device, workers: int, batch: int, batches: int) -> dict:
    """The training pipeline as the trainer builds it (runner.parts), nothing consuming but this loop."""
    cfg = workload(root, dev, batch, f"data.workers={workers}")
    src = parts.source(cfg, data.build(cfg.data), dev)
    try:
        for _ in range(3):  # warm-up: the workers start
            next(src)
        t0 = time.perf_counter()
        for _ in range(batches):
            next(src)
        dt = time.perf_counter() - t0
    finally:
        src.close()
    return {"workers": workers, "batch": batch, "examples_per_s": batches * batch / dt}


def train_runs(root: Path, dev: torch.device, batch: int, steps: int, out: Path) -> dict:
    """Plain SGD and every echo policy behind 2 workers, through echo-run's own runs on ``dev`` (each
    policy's batches, held batch and, for example echoing, shuffle buffer on the device)."""
    common = ["data.workers=2", "eval.every_loads=null", f"budget.steps={steps}", "checkpoint.enabled=false"]
    res = {}
    for name, ov in (("sgd", ["schedule=none"]), ("stochastic", ["echo=stochastic", "schedule=cosine"]),
                     ("batch", ["echo=batch"]), ("example", ["echo=example"]), ("adaptive", ["echo=adaptive"])):
        run_dir = out / name
        runs.run_once(workload(root, dev, batch, *common, *ov), run_dir)
        last = read_jsonl(run_dir / "metrics.jsonl")[-1]
        res[name] = {"steps": last["step"], "example_loads": last["example_loads"], "wall_s": last["wall_s"],
                     "idle_s": last["idle_s"], "idle_fraction": last["idle_s"] / last["wall_s"],
                     "steps_per_fresh_batch": last["step"] / (last["example_loads"] / batch)}
    return res


def torchrun_nccl(root: Path, dev: torch.device, out: Path) -> dict:
    backend = "nccl" if dev.type == "cuda" else "gloo"
    cmd = [sys.executable, "-m", "runner.cli", "launcher=torchrun", "launcher.nproc_per_node=1",
           f"launcher.backend={backend}", f"train.device={dev.type}", "budget.steps=50", "eval.every_loads=null",
           "logger.progress=false", f"hydra.run.dir={out / 'torchrun'}"]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    rec = read_jsonl(out / "torchrun" / "metrics.jsonl")
    return {"backend": backend, "exit_code": p.returncode, "seconds": time.perf_counter() - t0,
            "steps": rec[-1]["step"] if rec else None, "test_acc": rec[-1].get("test_acc") if rec else None,
            "stderr_tail": p.stderr[-500:] if p.returncode else ""}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu", action="store_true", help="check the script on the CPU at a tiny size")
    ap.add_argument("--out", default=str(ROOT / "results" / "bench" / "gpu.json"))
    a = ap.parse_args()
    if not a.cpu and not torch.cuda.is_available():
        print("gpu-smoke: error: no CUDA GPU is visible to torch on this machine; run it on a GPU machine "
              "(or `python scripts/gpu_smoke.py --cpu` to check the script).", file=sys.stderr)
        sys.exit(2)
    dev = torch.device("cpu" if a.cpu else "cuda")
    tiny = a.cpu
    batch = 8 if tiny else 128
    t_start = time.perf_counter()
    res = {"device": summary.versions()["device"], "torch": torch.__version__, "cuda": torch.version.cuda,
           "cpus": os.cpu_count(), "git_revision": summary.git_revision(), "tiny_cpu_check": tiny,
           "command": "make gpu-smoke  # python scripts/gpu_smoke.py " + " ".join(sys.argv[1:])}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "jpegs"
        write_jpegs(root, classes=10, per_class=16 if tiny else 512, size=64)
        print("1. ResNet-18 step time (bf16, channels_last), without and with torch.compile...", flush=True)
        res["step"] = [step_time(root, dev, batch, c, repeats=3 if tiny else 7, steps=2 if tiny else 30)
                       for c in ((False,) if tiny else (False, True))]
        print("2. image-folder pipeline throughput...", flush=True)
        res["loader"] = [loader_throughput(root, dev, w, batch, 5 if tiny else 60) for w in ((1, 2) if tiny else (2, 8))]
        print("3. plain SGD vs adaptive echoing behind 2 workers...", flush=True)
        res["idle"] = train_runs(root, dev, batch, 10 if tiny else 300, Path(tmp))
        print("4. one-GPU torchrun job...", flush=True)
        res["torchrun"] = torchrun_nccl(root, dev, Path(tmp))
    res["total_s"] = time.perf_counter() - t_start
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
