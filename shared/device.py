"""Device selection shared by the service and the trainer."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Literal, get_args

import torch

from shared.errors import SaltError

Precision = Literal["auto", "fp32", "bf16"]
"""``auto`` (bf16 autocast where the device runs bf16 natively: a recent GPU, or a CPU with AVX512-BF16 or
AMX; fp32 otherwise), ``fp32`` or ``bf16``."""
PRECISIONS: tuple[str, ...] = get_args(Precision)
ResolvedPrecision = Literal["fp32", "bf16"]
"""What ``auto`` resolves to on a device: the precision a model actually runs in."""


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


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX); emulated bf16 is many times slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` runs bf16 natively."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_native_bf16()


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` becomes ``bf16`` where the device runs it natively and ``fp32`` elsewhere; ``fp32`` and
    ``bf16`` are returned as they are (``bf16`` on a GPU without it is refused)."""
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if precision not in PRECISIONS:
        raise SaltError(f"unknown precision {precision!r}", f"use {', '.join(PRECISIONS)}")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise SaltError("bf16 requested but this GPU does not support it", "pass --precision fp32")
    return precision


def autocast_for(device: torch.device, precision: str) -> contextlib.AbstractContextManager[object]:
    """bf16 autocast for ``bf16``, and for ``auto`` where the device runs bf16 natively (recent GPUs; CPUs
    with AVX512-BF16 or AMX, where it is about twice as fast as fp32); no autocast otherwise."""
    if resolve_precision(precision, device) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
