"""Device and precision resolution shared by the trainer and the service."""

from __future__ import annotations

import pytest
import torch

from shared import device as device_mod
from shared.device import autocast_for, resolve_precision
from shared.errors import SaltError

CPU = torch.device("cpu")


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_follows_native_bf16_on_cpu(monkeypatch: pytest.MonkeyPatch, native: bool, expected: str) -> None:
    monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda: native)
    assert resolve_precision("auto", CPU) == expected
    # explicit choices are kept whatever the hardware
    assert resolve_precision("fp32", CPU) == "fp32"
    assert resolve_precision("bf16", CPU) == "bf16"


def test_autocast_matches_the_resolved_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.randn(4, 8)
    w = torch.randn(8, 8)
    monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda: True)
    with autocast_for(CPU, "auto"):
        assert (x @ w).dtype == torch.bfloat16
    with autocast_for(CPU, "fp32"):
        assert (x @ w).dtype == torch.float32
    monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda: False)
    with autocast_for(CPU, "auto"):
        assert (x @ w).dtype == torch.float32


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(SaltError, match="unknown precision"):
        resolve_precision("fp8", CPU)


def test_cpu_flags_are_read_from_cpuinfo(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    real_path = device_mod.Path
    for flags, expected in (("fpu avx512f avx512_bf16", True), ("fpu amx_bf16 amx_tile", True), ("fpu avx2", False)):
        info = tmp_path / "cpuinfo"
        info.write_text(f"processor : 0\nflags : {flags}\n")
        monkeypatch.setattr(device_mod, "Path", lambda p, info=info: info if p == "/proc/cpuinfo" else real_path(p))
        assert device_mod.cpu_has_native_bf16() is expected
