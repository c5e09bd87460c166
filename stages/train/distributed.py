"""DistributedDataParallel glue: the process's place in a ``torchrun`` job, and collective helpers.

Under ``torchrun`` the environment names the job (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``); the
process group uses NCCL on CUDA and gloo on the CPU. Without those variables everything is a no-op
for a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Distributed:
    """This process's rank among ``world_size`` processes (``local_rank`` picks its GPU)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_environment(cls) -> "Distributed":
        return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                   int(os.environ.get("LOCAL_RANK", 0)))

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def start(self, device: torch.device) -> None:
        """Join the process group (once), NCCL for CUDA devices and gloo otherwise."""
        if self.enabled and not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")

    def stop(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The element-wise sum of ``tensor`` over all processes (in place; itself when alone)."""
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every process if ``flag`` is true on any."""
        return bool(self.sum(torch.tensor([float(flag)], device=device)).item() > 0)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()
