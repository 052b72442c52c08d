"""Throughput of runner.pipeline's Source against a plain torch DataLoader on a decode-bound image
folder, side by side in one process; writes results/bench/pipeline.json and prints a table. Not a test.

1. decode-bound: a folder of JPEGs (default 2,000 images of 64x64 in 10 class folders, written to a
   temporary directory) read by torchvision's ImageFolder with torchvision.io's decoder, the same
   random transforms.v2 pipeline (RandomResizedCrop, flip, to float, normalise) and batch size. (a) a
   plain DataLoader (DistributedSampler order, persistent workers, prefetch_factor 2), iterated epoch
   after epoch; (b) the Source (StatefulDataLoader, per-example seeded transform, feeder thread and
   queue). The "trainer" only takes batches, so examples/s is the pipeline's. Each run skips its first
   batch (worker start-up), then times ``--batches`` batches (about an epoch and a half, so an epoch
   boundary, where both drain and restart their workers' queues, is in). The two sides alternate
   within each repeat (and swap which goes first); the ratio Source / DataLoader is taken per
   repeat; the median and the range over repeats are reported (goal: median >= 0.95). Beside it,
   the CPU cost: CPU seconds of the whole run (this process and its joined workers) per decoded
   image, as examples per CPU-second Source / DataLoader; on a machine shared with other jobs it
   moves less than the wall clock and isolates the Source's own overhead (the per-example seeded
   RNG, the keys, the feeder thread).
2. throttle: examples/s of a throttled Source over an in-memory set against its ``examples_per_s``,
   for each worker count (the rate is split between the workers).

Throughput is wall clock by nature (workers run in other processes). On a machine with fewer cores
than workers + 1 the processes share the cores: that oversubscription is flagged in the table and the
JSON, with the load average before and after the run.
Usage: python scripts/bench_pipeline.py [--images 2000] [--size 64] [--batch 32] [--workers 1 2 4]
       [--repeats 7] [--batches 90] [--rate 2000] [--out results/bench/pipeline.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.multiprocessing as mp
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from runner import config, parts
from runner.data import Splits

ROOT = Path(__file__).resolve().parent.parent


def write_images(root: Path, n: int, size: int) -> None:
    """n JPEGs with some structure (smooth colour fields plus noise), 10 class folders."""
    from torchvision.io import encode_jpeg, write_file

    g = torch.Generator().manual_seed(0)
    for i in range(n):
        d = root / f"class{i % 10}"
        d.mkdir(parents=True, exist_ok=True)
        low = torch.rand(1, 3, 8, 8, generator=g)
        img = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)[0]
        img = (img * 200 + torch.rand(3, size, size, generator=g) * 55).clamp(0, 255).to(torch.uint8)
        write_file(str(d / f"{i:05d}.jpg"), encode_jpeg(img, quality=90))


DECODED = mp.Value("q", 0)  # images decoded, by any process (workers inherit it)


def read_image(path: str) -> torch.Tensor:
    from torchvision.io import ImageReadMode, decode_image

    with DECODED.get_lock():
        DECODED.value += 1
    return decode_image(path, mode=ImageReadMode.RGB)


def transform(size: int):
    from torchvision.transforms import v2

    return v2.Compose([v2.RandomResizedCrop(size - size // 8, antialias=True), v2.RandomHorizontalFlip(),
                       v2.ToDtype(torch.float32, scale=True), v2.Normalize([0.5] * 3, [0.25] * 3)])


class Plain:
    """What a PyTorch user writes: a DataLoader over the data set, epoch after epoch."""

    def __init__(self, ds, batch: int, workers: int):
        self.sampler = DistributedSampler(ds, num_replicas=1, rank=0, shuffle=True, seed=0, drop_last=True)
        self.dl = DataLoader(ds, batch_size=batch, sampler=self.sampler, drop_last=True, num_workers=workers,
                             prefetch_factor=2 if workers else None, persistent_workers=workers > 0)
        self.epoch, self.it = 0, iter(self.dl)

    def __next__(self):
        while True:
            try:
                return next(self.it)
            except StopIteration:
                self.epoch += 1
                self.sampler.set_epoch(self.epoch)
                self.it = iter(self.dl)

    def close(self):
        getattr(self.it, "_shutdown_workers", lambda: None)()  # what its __del__ does, now


def source(ds, tf, batch: int, workers: int, *overrides: str):
    """runner.pipeline's Source as the trainer builds it (runner.parts, its arguments from echo-run's
    config: prefetch_factor 2, persistent workers, no pinning on the CPU), over the bench's own data set."""
    cfg = config.compose([f"data.batch_size={batch}", f"data.workers={workers}", "data.prefetch_factor=2",
                          *overrides])
    return lambda: parts.source(cfg, Splits(train=ds, test=ds, task="classification", train_transform=tf),
                                torch.device("cpu"))


def cpu_s() -> float:
    """CPU seconds of this process and of its children that have exited (joined workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def timed(it, batches: int, batch: int) -> float:
    """Examples/s over ``batches`` batches after the first (worker start-up excluded)."""
    next(it)
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch / (time.perf_counter() - t0)


def measure(make, a) -> tuple:
    """(examples/s on the wall clock, CPU seconds per decoded example, whole run, workers included)."""
    c0, n0 = cpu_s(), DECODED.value
    it = make()
    try:
        rate = timed(it, a.batches, a.batch)
    finally:
        it.close()  # joins the workers, so their CPU time is counted
    return rate, (cpu_s() - c0) / max(1, DECODED.value - n0)


def summary(xs: list) -> dict:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "all": xs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--batches", type=int, default=90)
    ap.add_argument("--rate", type=float, default=2000.0, help="examples/s of the throttle check")
    ap.add_argument("--out", default=str(ROOT / "results" / "bench" / "pipeline.json"))
    a = ap.parse_args()
    warnings.filterwarnings("ignore", message="This DataLoader will create")  # flagged in the table
    torch.set_num_threads(1)  # the main process only moves batches; workers use one thread each
    from torchvision.datasets import ImageFolder

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    out = {"command": "python scripts/bench_pipeline.py " + " ".join(sys.argv[1:]),
           "machine": {"cores": cores, "platform": platform.platform(), "python": platform.python_version(),
                       "torch": torch.__version__, "loadavg_start": os.getloadavg()},
           "config": {k: v for k, v in vars(a).items() if k != "out"}, "decode": {}, "throttle": {}}
    print(f"{cores} cores; {a.images} JPEGs {a.size}x{a.size}, batch {a.batch}, {a.batches} timed batches, "
          f"{a.repeats} alternating repeats")
    with tempfile.TemporaryDirectory() as tmp:
        write_images(Path(tmp), a.images, a.size)
        tf = transform(a.size)
        ds = ImageFolder(tmp, loader=read_image)  # decoded, not augmented: the Source augments
        ds_tf = ImageFolder(tmp, loader=read_image, transform=tf)  # the plain loader's data set
        print("wall: examples/s, Source / DataLoader; cpu: examples per CPU-second (all processes), "
              "Source / DataLoader; median [min, max] over repeats")
        print(f"{'workers':>7} {'DL ex/s':>10} {'Src ex/s':>8} {'wall':>7} {'':>14} {'cpu':>8}")
        for w in a.workers:
            a.w = w
            plain = lambda: Plain(ds_tf, a.batch, w)
            src = source(ds, tf, a.batch, w)
            res = {"dataloader": [], "source": []}
            for r in range(a.repeats):
                for name in (("dataloader", "source") if r % 2 == 0 else ("source", "dataloader")):
                    res[name].append(measure(plain if name == "dataloader" else src, a))
            ratio = [s[0] / p[0] for p, s in zip(res["dataloader"], res["source"])]
            cpu_ratio = [p[1] / s[1] for p, s in zip(res["dataloader"], res["source"])]
            row = {"dataloader_ex_s": summary([p[0] for p in res["dataloader"]]),
                   "source_ex_s": summary([s[0] for s in res["source"]]), "ratio": summary(ratio),
                   "dataloader_cpu_ms_per_example": summary([1e3 * p[1] for p in res["dataloader"]]),
                   "source_cpu_ms_per_example": summary([1e3 * s[1] for s in res["source"]]),
                   "cpu_ratio": summary(cpu_ratio), "oversubscribed": w + 1 > cores}
            out["decode"][str(w)] = row
            note = "  more processes than cores" if row["oversubscribed"] else ""
            print(f"{w:>7} {row['dataloader_ex_s']['median']:>10.0f} {row['source_ex_s']['median']:>8.0f} "
                  f"{row['ratio']['median']:>7.3f} [{min(ratio):.2f}, {max(ratio):.2f}] "
                  f"{row['cpu_ratio']['median']:>8.3f} [{min(cpu_ratio):.2f}, {max(cpu_ratio):.2f}]{note}")

    mem = TensorDataset(torch.randn(4096, 16), torch.arange(4096))
    print(f"throttle at {a.rate:.0f} examples/s (in-memory data):")
    for w in [0] + a.workers:
        src = source(mem, None, a.batch, w, f"pipeline.examples_per_s={a.rate}")()
        try:
            # About two seconds, a multiple of the worker count: the N workers deliver in groups of N,
            # so timing from the first batch to the n-th then spans exactly n/N throttle periods.
            k = max(w, 1)
            n = max(8, round(2 * a.rate / a.batch / k) * k)
            got = timed(src, n, a.batch)
        finally:
            src.close()
        out["throttle"][str(w)] = {"target_ex_s": a.rate, "measured_ex_s": got, "ratio": got / a.rate}
        print(f"  workers={w}: {got:.0f} examples/s ({got / a.rate:.3f} of the target)")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
    out["machine"]["loadavg_end"] = os.getloadavg()
    print(f"load average {out['machine']['loadavg_start']} -> {out['machine']['loadavg_end']}")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
