"""Test helpers that record what the trainer asks of its teacher."""

from __future__ import annotations

import numpy as np
import pytest

from shared.hashing import window_hash
from trainer.teacher import Teacher


def record_asked_windows(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The hashes of every window the trainer's teacher asks labels for, in order, from now on."""
    asked: list[str] = []
    original = Teacher.windows_for

    def windows_for(self: Teacher, step: int, micro: int) -> np.ndarray:
        w = original(self, step, micro)
        asked.extend(window_hash(row) for row in w)
        return w

    monkeypatch.setattr(Teacher, "windows_for", windows_for)
    return asked
