"""Where a run executes: device and CPU threads, and data parallelism over processes.

A run launched by ``torchrun`` joins the process group (gloo on CPU, NCCL on CUDA); each
process trains on its contiguous share of every global batch and gradients are averaged
with one all-reduce per step. Without ``torchrun`` everything here is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import Tensor

from goose_neuro.errors import ConfigError


@dataclass(frozen=True)
class Dist:
    """This process's place in the data-parallel group."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def pick_device(name: str) -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda requested but CUDA is not available")
    return dev


def set_threads(n: int | None) -> None:
    """torch CPU threads (None leaves the setting alone)."""
    if n is None:
        return
    if n < 1:
        raise ConfigError(f"--threads must be >= 1 (got {n})")
    torch.set_num_threads(n)


def pick_threads() -> int:
    """CPU threads for torch: all cores on an idle machine, one when others are busy.

    Measured on a 2-core machine under load: two torch threads competing with other
    processes made a training step 10-20x slower than one thread did.
    """
    n = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (OSError, AttributeError):  # not available on this platform
        return 1
    return max(1, min(n, int(n - load + 0.5)))


def setup_distributed(device: torch.device) -> tuple[Dist, torch.device]:
    """Join the process group when launched by ``torchrun``. Returns this process's place and
    its device (on CUDA, the GPU of its ``LOCAL_RANK``)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), device
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return Dist(dist.get_rank(), dist.get_world_size()), device


def teardown_distributed(d: Dist) -> None:
    if d.world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()


def all_reduce_mean(tensors: list[Tensor], d: Dist) -> None:
    """Average ``tensors`` in place over the processes (one message for all of them)."""
    if d.world <= 1 or not tensors:
        return
    import torch.distributed as dist

    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    flat /= d.world
    off = 0
    for t in tensors:
        t.copy_(flat[off:off + t.numel()].view_as(t))
        off += t.numel()


def barrier(d: Dist) -> None:
    if d.world > 1:
        import torch.distributed as dist

        dist.barrier()


def broadcast_int(value: int, d: Dist) -> int:
    """Rank 0's ``value`` on every process."""
    if d.world <= 1:
        return value
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.int64)
    dist.broadcast(t, 0)
    return int(t)
