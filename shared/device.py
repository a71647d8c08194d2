"""Device selection shared by the service and the trainer."""

from __future__ import annotations

from pathlib import Path

import torch

from shared.errors import SaltError

PRECISIONS = ("auto", "fp32", "bf16")
"""Precision settings the trainer, experiments and benchmarks accept."""


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
        raise SaltError(f"unknown precision {precision!r}", "use auto, fp32 or bf16")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise SaltError("bf16 requested but this GPU does not support it", "pass --precision fp32")
    return precision
