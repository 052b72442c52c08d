"""The process's place in a (possibly) distributed job, read from torchrun's environment."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Ctx:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def pick_device(want: str, local_rank: int = 0) -> torch.device:
    if want == "cpu" or (want == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if want == "auto":
        return torch.device("cuda", local_rank)
    return torch.device(want)


def init(device: str = "auto", backend: str = "auto") -> Ctx:
    """One process alone, or one rank of a torchrun job (``RANK`` set) with its process group,
    created once here and used for every communication round."""
    if "RANK" not in os.environ:
        return Ctx(device=pick_device(device))
    rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
    dev = pick_device(device, local)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        be = backend if backend != "auto" else ("nccl" if dev.type == "cuda" else "gloo")
        dist.init_process_group(be, device_id=dev if be == "nccl" else None, **restart_store(rank, world))
    return Ctx(rank, world, local, dev)


def restart_store(rank: int, world: int) -> dict:
    """On one node, the store of this torchrun attempt under its own prefix. torchrun's agent keeps
    one store across restarts and torch no longer prefixes it per attempt, so a restarted group
    could read the dead group's addresses and hang in gloo's connect (seen with --max-restarts).
    Several nodes keep torch's default: their restart counts may differ from node to node."""
    env = os.environ
    if env.get("TORCHELASTIC_USE_AGENT_STORE") != "True" or env.get("GROUP_WORLD_SIZE", "1") != "1":
        return {}
    store = dist.TCPStore(env["MASTER_ADDR"], int(env["MASTER_PORT"]), world, is_master=False)
    attempt = env.get("TORCHELASTIC_RESTART_COUNT", "0")
    return {"store": dist.PrefixStore(f"echo-run/attempt{attempt}", store), "rank": rank, "world_size": world}


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
