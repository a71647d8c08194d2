"""Sampled labels through the cache, on SQLite and on the real PostgreSQL: kind and draws in the key, a
second answer all hits with the same bytes, a new process reading the rows back."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from selector_service.store.cache_rows import sampled_params
from shared.client import SelectorClient
from shared.wire import WIRE_MEDIA_TYPE
from tests.selector_service.conftest import count_rows, make_client


def test_sampled_labels_are_cached_under_kind_and_draws(tiny_checkpoint: Path, db_url: str, windows: np.ndarray
                                                        ) -> None:
    body = {"windows": windows[:4].tolist(), "kind": "sample", "draws": 16}
    headers = {"accept": WIRE_MEDIA_TYPE}
    with make_client(tiny_checkpoint, db_url) as c:
        sc = SelectorClient("http://testserver", http_client=c)
        first = c.post("/v1/soft-labels", json=body, headers=headers)
        other = c.post("/v1/soft-labels", json={**body, "draws": 32}, headers=headers)
        topk = c.post("/v1/soft-labels", json={"windows": body["windows"], "k": 16}, headers=headers)
        m = sc.metrics()
    assert first.status_code == other.status_code == topk.status_code == 200
    assert m["salt_cache_misses_total"] == 12 and m["salt_cache_hits_total"] == 0  # three keys, four windows
    assert m["salt_windows_computed_total"] == 12
    with make_client(tiny_checkpoint, db_url) as c:
        again = c.post("/v1/soft-labels", json=body, headers=headers)
        m = SelectorClient("http://testserver", http_client=c).metrics()
    assert again.content == first.content
    assert m["salt_cache_hits_total"] == 4 and m["salt_windows_computed_total"] == 0
    params = {p for _, _, p, _ in count_rows(db_url)}
    assert {sampled_params(16, 1.0), sampled_params(32, 1.0)} <= params
    assert sampled_params(16, 1.0) == "sample:n=16:t=1.0"
