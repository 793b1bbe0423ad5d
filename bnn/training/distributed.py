"""Many processes through torchrun: process-group set-up from the environment torchrun
provides, and the reduction of metrics summed over ranks."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place: its rank among ``size`` processes and its device."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        """Whether this process writes files and prints."""
        return self.rank == 0


def resolve_device(device: str | None) -> torch.device:
    """The device ``device`` names (``cpu``, ``cuda``, ``cuda:N``, ``mps``), checked against
    what this machine has; ``None`` is CUDA when available, else the CPU."""
    from bnn_core.errors import ConfigError

    if not device:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        wanted = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        wanted = None
    if wanted is None or wanted.type not in {"cpu", "cuda", "mps"}:
        raise ConfigError(
            f"unknown device {device!r}: use cpu, cuda, cuda:N (N counts from 0) or mps"
        )
    if wanted.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"{device!r} asked, but this machine has no CUDA device; use cpu")
        if wanted.index is not None and wanted.index >= count:
            raise ConfigError(
                f"{device!r} asked, but {count} CUDA device(s) are present "
                f"(cuda:0 to cuda:{count - 1})"
            )
    if wanted.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{device!r} asked, but this machine has no MPS device; use cpu")
    return wanted


def setup(device: str | None) -> World:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1): NCCL on
    CUDA, gloo on CPU. ``device`` is ``cpu``, ``cuda`` or ``cuda:N``; default: CUDA when
    available."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    wanted = resolve_device(device)
    if wanted.type == "cuda" and wanted.index is None:
        wanted = torch.device("cuda", local_rank if size > 1 else 0)
    if size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if wanted.type == "cuda" else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    return World(rank=rank, size=size, local_rank=local_rank, device=wanted)


def all_sum(values: list[float], world: World) -> list[float]:
    """``values`` summed over every rank (unchanged with one process)."""
    if world.size == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=world.device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def teardown() -> None:
    """Leave the process group, if one was joined."""
    if dist.is_initialized():
        dist.destroy_process_group()
