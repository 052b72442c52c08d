"""The torchrun worker of ``echo-advise measure``: time all-reduces on the job's ranks.

    torchrun --standalone --nproc-per-node=N -m runner.advise.allreduce CONFIG.yaml --bytes B --out OUT.json

Each rank joins the default process group as a training rank does (``runner.dist.init``: gloo on
CPU, NCCL on GPU, from the resolved config's ``train.device`` and ``launcher.backend``), then times
``repeats`` all-reduces of a float32 tensor of ``B`` bytes and as many of one number, each between
barriers with the device synchronised, after a few warm-up calls. A call's time is the slowest
rank's (an all-reduce MAX of the times). Rank 0 writes the times to ``OUT.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m runner.advise.allreduce")
    ap.add_argument("config")
    ap.add_argument("--bytes", type=int, required=True)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    import torch
    import torch.distributed as tdist
    from omegaconf import OmegaConf

    from .. import accel, dist

    cfg = OmegaConf.load(a.config)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    ctx = dist.init(cfg.train.device, cfg.launcher.backend)
    dev = ctx.device

    def timed(t: torch.Tensor) -> list:
        out = []
        for i in range(a.warmup + a.repeats):
            tdist.barrier()
            accel.sync(dev)
            t0 = time.perf_counter()
            tdist.all_reduce(t)
            accel.sync(dev)
            if i >= a.warmup:
                out.append(time.perf_counter() - t0)
        slowest = torch.tensor(out, dtype=torch.float64, device=dev)
        tdist.all_reduce(slowest, op=tdist.ReduceOp.MAX)
        return slowest.cpu().tolist()

    big = timed(torch.zeros(max(1, a.bytes // 4), dtype=torch.float32, device=dev))
    tiny = timed(torch.zeros(1, dtype=torch.float32, device=dev))
    if ctx.is_main:
        Path(a.out).write_text(json.dumps({"world": ctx.world, "backend": tdist.get_backend(), "bytes": a.bytes,
                                           "big_s": big, "tiny_s": tiny}))
    dist.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
