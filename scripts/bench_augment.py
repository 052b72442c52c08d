"""CIFAR augmentation throughput on one CPU thread: torchvision's v2 transforms applied per image
against runner.vision's batched per-example crop and flip (the same distribution, checked in
tests/test_workloads.py). Writes results/bench/augment.json and prints a line per method.

    .venv/bin/python scripts/bench_augment.py
"""
import json
import statistics
import time
from pathlib import Path

import torch
from torchvision.transforms import v2

from runner.vision import STATS, CifarSet

torch.set_num_threads(1)
mean, std = STATS["cifar10"]
images = torch.randint(0, 256, (2560, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
ds = CifarSet(images, torch.zeros(len(images), dtype=torch.long), mean, std, augment=True)
tv = v2.Compose([v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip(),
                 v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])
methods = {"torchvision v2 per image": lambda idx: torch.stack([tv(images[i]) for i in idx]),
           "runner.vision batched": lambda idx: ds.batch(idx)[0]}
out = {}
for name, f in methods.items():
    times = []
    for r in range(len(images) // 128):
        idx = list(range(r * 128, (r + 1) * 128))
        t = time.perf_counter()
        f(idx)
        times.append(time.perf_counter() - t)
    out[name] = 128 / statistics.median(times)
    print(f"{name:>26}: {out[name]:9,.0f} images/s (median over {len(times)} batches of 128, 1 thread)")
out["ratio"] = out["runner.vision batched"] / out["torchvision v2 per image"]
print(f"{'ratio':>26}: {out['ratio']:9.1f}x")
Path("results/bench").mkdir(parents=True, exist_ok=True)
Path("results/bench/augment.json").write_text(json.dumps(out, indent=1) + "\n")
