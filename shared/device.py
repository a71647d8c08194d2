"""Device selection shared by the service and the trainer."""

from __future__ import annotations

import torch

from shared.errors import SaltError


def resolve_device(name: str, *, fix: str = "use cpu") -> torch.device:
    """``auto`` (CUDA when present), ``cpu`` or ``cuda[:N]``; refuses CUDA where there is none.

    Args:
        name: the requested device.
        fix: how the user picks another device (shown in the error).
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise SaltError(f"unknown device {name!r}", "use auto, cpu or cuda[:N]") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SaltError(f"device {name} asked for but CUDA is not available", fix)
    return dev
