"""Data-parallel training under ``torchrun``: the process group, each rank's shard, and reductions.

``torchrun --nproc_per_node N salt train ...`` starts N copies of the trainer with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set. Every global micro-batch
(``batch_size`` windows, the same as a one-process run) is split by rows: rank r trains on rows
``r::N`` of it, so the ranks together see exactly the one-process batch and DDP's gradient average
equals the one-process gradient (up to float summation order). Rank 0 alone writes metrics,
checkpoints and the summary; every rank loads a checkpoint on resume.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from shared.device import resolve_device
from shared.errors import SaltError

_created: list[bool] = []
"""Non-empty when ``setup`` started the process group (so ``teardown`` ends only a group it made)."""


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (rank 0 of 1 without ``torchrun``)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this process writes the run's files."""
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.size > 1

    def shard(self, rows: np.ndarray) -> np.ndarray:
        """This rank's rows of a global micro-batch: ``rows[rank::size]``."""
        return rows[self.rank :: self.size]


def env_world() -> World:
    """The world ``torchrun`` describes in the environment (one process when ``WORLD_SIZE`` is unset or 1)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    return World(rank=int(os.environ["RANK"]), size=size, local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def setup(world: World, device_name: str, *, batch_size: int) -> torch.device:
    """Check the batch splits evenly, pick this rank's device and join the process group (gloo or nccl)."""
    if not world.parallel:
        return resolve_device(device_name, fix="pass --device cpu")
    if batch_size % world.size:
        raise SaltError(f"batch size {batch_size} does not split over {world.size} processes",
                        f"pass a --batch-size divisible by {world.size} (it is the global micro-batch)")
    device = resolve_device(device_name, fix="pass --device cpu")
    if device.type == "cuda":
        device = torch.device("cuda", world.local_rank)  # one GPU per process
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        _created.append(True)
    return device


def teardown(world: World) -> None:
    if world.parallel and _created and dist.is_initialized():
        dist.destroy_process_group()
        _created.clear()


def barrier(world: World) -> None:
    if world.parallel:
        dist.barrier()


def all_sum(world: World, values: list[float], device: torch.device) -> list[float]:
    """Element-wise sum over the ranks (the values themselves in a one-process run)."""
    if not world.parallel:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    out = t.tolist()
    if t.device.type == "cpu":
        _wait_released(t)
    return out


def _wait_released(t: torch.Tensor, limit_s: float = 10.0) -> None:
    """Wait, without the GIL, until gloo's worker thread has let go of a collective's tensor.

    The worker drops its reference after the collective completes and needs the GIL to do so (the tensor
    has a Python object). If the main thread meanwhile destroyed the process group it would join that
    worker while holding the GIL: both wait forever. That is how a run under ``torchrun`` hung at exit
    on a loaded machine, after its summary was written; waiting here makes the end of every collective
    certain before the next step (or the teardown) runs.
    """
    deadline = time.monotonic() + limit_s
    while t._use_count() > 1 and time.monotonic() < deadline:
        time.sleep(0.0005)
