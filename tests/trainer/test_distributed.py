"""``trainer.distributed``: collectives that leave nothing for gloo's worker thread to release later."""

from __future__ import annotations

import threading
import time

import torch

from trainer.distributed import _wait_released


def test_wait_released_waits_for_another_threads_reference() -> None:
    # The graph of y holds a C++ reference to x, as a finished gloo work holds its tensor until the
    # worker thread drops it; a thread drops it 0.2 s later.
    x = torch.tensor([1.0])
    w = torch.tensor([2.0], requires_grad=True)
    holder = {"y": x * w}
    assert x._use_count() == 2

    def drop() -> None:
        time.sleep(0.2)
        holder.clear()

    t = threading.Thread(target=drop)
    t0 = time.monotonic()
    t.start()
    _wait_released(x)  # sleeps, so the other thread can take the GIL and let go
    waited = time.monotonic() - t0
    t.join()
    assert x._use_count() == 1
    assert waited >= 0.19


def test_wait_released_gives_up_at_its_limit() -> None:
    x = torch.tensor([1.0])
    w = torch.tensor([2.0], requires_grad=True)
    y = x * w  # held for the whole test
    t0 = time.monotonic()
    _wait_released(x, limit_s=0.1)
    assert 0.1 <= time.monotonic() - t0 < 2.0
    assert y.requires_grad and x._use_count() == 2
