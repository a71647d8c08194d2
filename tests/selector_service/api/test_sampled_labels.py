"""Sampled labels over the API: the draws of the in-process forward, the same for a window in any batch,
JSON and binary alike, and the request bounds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from fastapi.testclient import TestClient

from shared.checkpoint import load_model
from shared.client import SelectorClient
from shared.hashing import window_hash
from shared.sampling import DEFAULT_DRAWS, MAX_DRAWS, sample_labels, seed_of
from tests.selector_service.conftest import assert_error


def test_sampled_labels_equal_draws_of_the_in_process_forward(client: TestClient, tiny_checkpoint: Path,
                                                              windows: np.ndarray) -> None:
    model, _, _ = load_model(tiny_checkpoint)
    with torch.inference_mode():
        logits = model(torch.from_numpy(windows[:, :-1]))
    seeds = np.array([seed_of(window_hash(w)) for w in windows], dtype=np.uint64)
    ids, counts = sample_labels(logits, 24, 2.0, seeds)
    sc = SelectorClient("http://testserver", http_client=client)
    got = sc.sampled_labels(windows, draws=24, temperature=2.0)
    W = got.ids.shape[2]
    assert got.draws == 24 and got.temperature == 2.0 and got.lengths.tolist() == [32] * 8
    assert torch.all(got.counts.sum(-1) == 24) and torch.all(counts[..., W:] == 0)
    assert torch.equal(got.ids, ids[..., :W]) and torch.equal(got.counts, counts[..., :W])
    # A window asked alone, in another batch, gets the same draws; the JSON answer holds them too.
    alone = sc.sampled_labels(windows[5:6], draws=24, temperature=2.0)
    w5 = int((alone.counts[0] > 0).sum(-1).max())
    assert torch.equal(alone.ids[0], got.ids[5, :, :w5]) and torch.equal(alone.counts[0], got.counts[5, :, :w5])
    body = client.post("/v1/soft-labels", json={"windows": windows[5:6].tolist(), "kind": "sample", "draws": 24,
                                                "temperature": 2.0}).json()
    assert body["kind"] == "sample" and body["draws"] == 24
    assert body["windows"][0]["ids"] == alone.ids[0].tolist()
    assert body["windows"][0]["counts"] == alone.counts[0].tolist()


def test_sample_requests_are_bounded_and_kinds_are_listed(client: TestClient, windows: np.ndarray) -> None:
    w = windows[:1].tolist()
    assert_error(client.post("/v1/soft-labels", json={"windows": w, "kind": "sample", "k": 4}), 422, "k_with_sample")
    assert_error(client.post("/v1/soft-labels", json={"windows": w, "draws": 4}), 422, "draws_with_topk")
    for draws in (0, MAX_DRAWS + 1):
        r = client.post("/v1/soft-labels", json={"windows": w, "kind": "sample", "draws": draws})
        assert r.status_code == 422
    assert client.post("/v1/soft-labels", json={"windows": w, "kind": "other"}).status_code == 422
    body = client.post("/v1/soft-labels", json={"windows": w, "kind": "sample"}).json()
    assert body["draws"] == DEFAULT_DRAWS
    assert sum(body["windows"][0]["counts"][0]) == DEFAULT_DRAWS
    defaults = client.get("/v1/model").json()["label_defaults"]
    assert defaults["kinds"] == ["topk", "sample"] and defaults["max_draws"] == MAX_DRAWS
    assert client.post("/v1/soft-labels", json={"windows": w, "k": 4}).json()["kind"] == "topk"
