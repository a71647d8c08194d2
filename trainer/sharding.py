"""How ``torchrun`` processes hold the student: a full copy each (DDP), or sharded (FSDP, ``fully_shard``).

Under FSDP every transformer block, then the whole model, is sharded over the ranks: parameters,
gradients and optimizer state, so a student too large for one device trains on several. Checkpoints are
written whole either way (the full state gathered to rank 0), so a run resumes, and a student is served,
exactly as after a one-process run.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.fsdp import fully_shard

from shared.errors import SaltError
from trainer.distributed import World

FQN = "fqn"
"""The optimizer-state format of sharded runs' checkpoints (full tensors keyed by parameter name)."""
_FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


def sharded(world: World, parallel: str) -> bool:
    """Whether this run shards the student (FSDP under torchrun)."""
    return world.parallel and parallel == "fsdp"


def wrap(model: nn.Module, world: World, parallel: str) -> nn.Module:
    """What the training step calls: the model, DDP around it, or the model sharded in place (FSDP)."""
    if not world.parallel:
        return model
    if parallel == "ddp":
        return torch.nn.parallel.DistributedDataParallel(model)
    for block in blocks(model):
        fully_shard(block)
    fully_shard(model)
    return model


def blocks(model: nn.Module) -> list[nn.Module]:
    """The student's transformer blocks (each sharded on its own, so one block's parameters are whole at once)."""
    if hasattr(model, "block_modules"):
        return list(model.block_modules)
    return list(getattr(model, "blocks", []))


def full_model_state(model: nn.Module, world: World, parallel: str) -> dict[str, torch.Tensor] | None:
    """The whole model's parameters on rank 0 (gathered from every rank: call it on all), or None unsharded."""
    if not sharded(world, parallel):
        return None
    return get_model_state_dict(model, options=_FULL)


def optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, world: World,
                    parallel: str) -> tuple[dict[str, Any], str | None]:
    """The optimizer state to save and its format. An ``fsdp`` run writes full tensors keyed by parameter name
    (``FQN``), gathered over the ranks (call it on all), so it resumes on any number of processes; a ``ddp``
    run writes ``Optimizer.state_dict()`` as it is."""
    if parallel != "fsdp":
        return optimizer.state_dict(), None
    options = _FULL if world.parallel else StateDictOptions(full_state_dict=True)
    return get_optimizer_state_dict(model, optimizer, options=options), FQN


def load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, saved: dict[str, Any], fmt: str | None,
                         world: World, parallel: str) -> None:
    """Restore a checkpoint's optimizer state into this run's optimizer (sharded or not)."""
    if fmt == FQN:
        set_optimizer_state_dict(model, optimizer, optim_state_dict=saved,
                                 options=StateDictOptions(full_state_dict=True))
    elif sharded(world, parallel):
        raise SaltError("the checkpoint was written by a ddp run, whose optimizer state cannot be sharded",
                        "resume it with --parallel ddp")
    else:
        optimizer.load_state_dict(saved)


def grad_norm_value(norm: torch.Tensor) -> float:
    """A total gradient norm as a float (a sharded model's norm is a DTensor)."""
    full = getattr(norm, "full_tensor", None)
    return float(full() if full is not None else norm)
