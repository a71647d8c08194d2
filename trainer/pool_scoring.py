"""Pools, scoring jobs and selections on the service, as the CLI and the demo drive them."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from tqdm import tqdm

from shared.client import SelectorClient
from shared.data import PackedDataset


def score_pool(
    client: SelectorClient, ds: PackedDataset, *, name: str = "train", indices: Sequence[int] | None = None,
    progress: bool = True, poll_s: float = 0.5,
) -> dict[str, Any]:
    """Register the train windows (all, or ``indices``) as a pool, score it, wait with a progress bar.

    Returns:
        the finished job record (with ``pool_id``).
    """
    with tqdm(desc="upload", unit="win", disable=not progress, dynamic_ncols=True) as bar:

        def uploaded(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        pool_id = client.register_pool(ds, name=name, indices=indices, progress=uploaded)
    job = client.start_job(pool_id)
    with tqdm(desc="score", unit="win", total=job.get("total"), disable=not progress, dynamic_ncols=True) as bar:

        def scored(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        job = client.wait_job(job["id"], poll_s=poll_s, progress=scored)
    return {**job, "pool_id": pool_id}


def select(client: SelectorClient, pool_id: str, method: str, **params: Any) -> dict[str, Any]:
    """Create a selection over a scored pool; returns its record (``id``, ``count``, ...)."""
    t0 = time.perf_counter()
    sel = client.create_selection(pool_id, method, **params)
    return {**sel, "seconds": time.perf_counter() - t0}
