"""Distributed data parallel plumbing: detect ``torchrun``, pick the device and backend.

famekit never starts worker processes itself: launch ``torchrun --nproc_per_node K -m
famekit.cli train ...`` (or any script calling :func:`famekit.training.train`) and every
process finds ``WORLD_SIZE`` / ``RANK`` / ``LOCAL_RANK`` in its environment. Then

* the backend is ``nccl`` when the processes train on CUDA (one GPU per local rank) and ``gloo``
  on CPU;
* every rank draws the same global batches and trains on its own slice of each (rows
  ``rank::world_size``), DDP averages the gradients;
* rank 0 evaluates, writes the run directory and broadcasts the early-stopping decision.

Outside ``torchrun`` everything here degrades to a single process (world size 1, rank 0).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from famekit.errors import ParameterError

__all__ = ["DistContext", "resolve_device", "setup", "teardown", "torchrun_env"]


@dataclass
class DistContext:
    """Where this process stands in a (possibly one-process) data-parallel job."""

    world_size: int = 1  # processes taking part (1 = plain single-process training)
    rank: int = 0  # this process's global rank; rank 0 evaluates and writes files
    local_rank: int = 0  # rank on this machine: picks the GPU
    local_world_size: int = 1  # processes on this machine: share its CPU cores
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False  # True when setup() created the process group (teardown ends it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    # ------------------------------------------------------------ collective helpers
    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """All-reduce ``tensor`` in place (sum over ranks); a no-op for one process."""
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def broadcast_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Overwrite ``tensor`` on every rank with rank 0's value; a no-op for one process."""
        if self.distributed:
            dist.broadcast(tensor, src=0)
        return tensor

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def torchrun_env() -> dict[str, int] | None:
    """The torchrun variables (world_size, rank, local_rank, local_world_size), or None.

    Returns None outside torchrun and for a one-process torchrun job (which needs no group).
    """
    if "WORLD_SIZE" not in os.environ or "RANK" not in os.environ:
        return None
    try:
        world_size = int(os.environ["WORLD_SIZE"])
        rank = int(os.environ["RANK"])
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
        local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
    except ValueError as exc:
        raise ParameterError(
            f"torchrun environment variables are not integers ({exc}). Fix: launch with "
            "torchrun, which sets WORLD_SIZE, RANK and LOCAL_RANK, or unset them"
        ) from None
    if world_size <= 1:
        return None
    return {"world_size": world_size, "rank": rank, "local_rank": local_rank,
            "local_world_size": local_world_size}


def resolve_device(device=None, local_rank: int = 0) -> torch.device:
    """``device`` as a torch.device: None = CUDA when available, else CPU.

    A bare ``"cuda"`` becomes this process's GPU (``cuda:<local_rank>``) so that each rank of a
    multi-GPU job trains on its own card.
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ParameterError(
            f"device={device!r} is not a torch device ({exc}). Fix: pass 'cpu', 'cuda' or 'cuda:N'"
        ) from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ParameterError(
                f"device={device!r} asked for CUDA but torch sees no GPU (torch "
                f"{torch.__version__}). Fix: pass device='cpu' (--device cpu) or install a CUDA "
                "build of torch"
            )
        if resolved.index is None:
            resolved = torch.device("cuda", local_rank % torch.cuda.device_count())
    elif resolved.type != "cpu":
        raise ParameterError(
            f"device={device!r} is not supported. Fix: pass 'cpu' or 'cuda[:N]'"
        )
    return resolved


def setup(device=None) -> DistContext:
    """Join the torchrun process group if there is one, and pick this process's device.

    Creates the group (``nccl`` for CUDA, ``gloo`` for CPU) unless the caller already did;
    :func:`teardown` destroys it only if it was created here.
    """
    env = torchrun_env()
    if env is None:
        return DistContext(device=resolve_device(device))
    ctx = DistContext(**env, device=resolve_device(device, env["local_rank"]))
    if not dist.is_initialized():
        if ctx.device.type == "cuda":
            torch.cuda.set_device(ctx.device)
        dist.init_process_group(backend="nccl" if ctx.device.type == "cuda" else "gloo")
        ctx.owns_group = True
    if dist.get_world_size() != ctx.world_size:
        raise ParameterError(
            f"the process group has {dist.get_world_size()} ranks but WORLD_SIZE says "
            f"{ctx.world_size}. Fix: launch with torchrun and do not change WORLD_SIZE"
        )
    return ctx


def teardown(ctx: DistContext) -> None:
    """Destroy the process group if :func:`setup` created it."""
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()
        ctx.owns_group = False
