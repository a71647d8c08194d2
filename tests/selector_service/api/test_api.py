"""The API over TestClient: answers equal an in-process forward, repeats computed once, docs and info."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from fastapi.testclient import TestClient

from shared.checkpoint import load_model, model_fingerprint
from shared.client import SelectorClient
from shared.hashing import window_hash
from shared.wire import WIRE_MEDIA_TYPE, decode_wire
from tests.reference import topk_soft_labels, window_scores


def reference(checkpoint: Path, windows: np.ndarray, k: int, temperature: float = 1.0):  # type: ignore[no-untyped-def]
    model, _, _ = load_model(checkpoint)
    with torch.inference_mode():
        x = torch.from_numpy(windows[:, :-1])
        hidden = model.hidden(x)
        logits = model.lm_head(hidden)
        return topk_soft_labels(logits, k, temperature), window_scores(logits, torch.from_numpy(windows[:, 1:]), hidden)


def test_soft_labels_equal_in_process_forward(client: TestClient, tiny_checkpoint: Path, windows: np.ndarray) -> None:
    (ids, lp, tail), _ = reference(tiny_checkpoint, windows, k=16, temperature=2.0)
    sc = SelectorClient("http://testserver", http_client=client)
    got = sc.soft_labels(windows, k=16, temperature=2.0)
    assert got.ids.shape == (8, 32, 16) and got.k == 16 and got.temperature == 2.0
    assert torch.equal(got.ids, ids)
    torch.testing.assert_close(got.logprobs, lp, atol=1e-2, rtol=1e-3)
    torch.testing.assert_close(got.tail, tail, atol=1e-2, rtol=1e-3)
    assert got.lengths.tolist() == [32] * 8
    assert got.hashes == [window_hash(w) for w in windows]
    # The JSON answer holds the same values.
    body = client.post("/v1/soft-labels", json={"windows": windows[:2].tolist(), "k": 16, "temperature": 2.0}).json()
    assert body["k"] == 16 and body["model"] == model_fingerprint(tiny_checkpoint)
    assert np.array_equal(np.array(body["windows"][1]["ids"]), ids[1].numpy())
    np.testing.assert_array_equal(np.array(body["windows"][1]["logprobs"], dtype=np.float32), got.logprobs[1].numpy())


def test_scores_equal_in_process_forward(client: TestClient, tiny_checkpoint: Path, windows: np.ndarray) -> None:
    _, ref = reference(tiny_checkpoint, windows, k=32)
    sc = SelectorClient("http://testserver", http_client=client)
    rows = sc.scores(windows)
    assert [r.hash for r in rows] == [window_hash(w) for w in windows]
    for i, r in enumerate(rows):
        assert r.n_tokens == 32
        assert abs(r.mean_loss - ref["mean_loss"][i]) < 1e-4
        assert abs(r.median_loss - ref["median_loss"][i]) < 1e-4
        assert abs(r.top1_acc - ref["top1_acc"][i]) < 1e-9
        assert abs(r.mean_entropy - ref["mean_entropy"][i]) < 1e-4
        if np.isnan(ref["salt_ds"][i]):
            assert r.salt_ds is None
        else:
            assert abs(r.salt_ds - ref["salt_ds"][i]) < 1e-4
        np.testing.assert_allclose(r.embedding.astype(np.float32), ref["embedding"][i].astype(np.float32), atol=2e-3)


def test_repeats_and_one_forward_give_labels_scores_and_embedding(client: TestClient, windows: np.ndarray) -> None:
    batch = np.concatenate([windows[:3], windows[:3], windows[1:2]])
    r = client.post("/v1/scores", json={"windows": batch.tolist()})
    assert r.status_code == 200
    out = r.json()["windows"]
    assert out[0] == out[3] and out[1] == out[4] == out[6]
    sc = SelectorClient("http://testserver", http_client=client)
    m = sc.metrics()
    assert m["salt_windows_computed_total"] == 3 and m["salt_forward_passes_total"] == 1
    # Labels at the default k were stored by the same forward: no new computation.
    sc.soft_labels(windows[:3], k=32)
    m = sc.metrics()
    assert m["salt_windows_computed_total"] == 3 and m["salt_cache_hits_total"] == 3


def test_texts_are_tokenized_by_the_service(client: TestClient, tiny_checkpoint: Path) -> None:
    _, tok, _ = load_model(tiny_checkpoint)
    text = "the quick brown fox jumps over the lazy dog"
    ids = tok.encode(text, add_special_tokens=False).ids
    by_text = client.post("/v1/scores", json={"texts": [text]}).json()["windows"][0]
    by_ids = client.post("/v1/scores", json={"windows": [ids]}).json()["windows"][0]
    assert by_text == by_ids and by_text["n_tokens"] == len(ids) - 1


def test_windows_of_different_lengths(client: TestClient, windows: np.ndarray) -> None:
    r = client.post("/v1/soft-labels", json={"windows": [windows[0].tolist(), windows[1][:10].tolist()], "k": 4},
                    headers={"accept": WIRE_MEDIA_TYPE})
    sl = decode_wire(r.content)
    assert sl.ids.shape == (2, 32, 4) and sl.lengths.tolist() == [32, 9]
    assert torch.all(sl.ids[1, 9:] == 0)


def test_model_info_health_docs(client: TestClient, tiny_checkpoint: Path) -> None:
    info = client.get("/v1/model").json()
    assert info["fingerprint"] == model_fingerprint(tiny_checkpoint)
    assert info["preset"] == "slm-tiny" and info["block_size"] == 64 and info["vocab_size"] > 256
    assert info["label_defaults"] == {"kinds": ["topk", "sample"], "k": 32, "max_k": 256, "draws": 64,
                                      "max_draws": 255, "temperature": 1.0}
    assert info["num_params"] > 0
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/soft-labels", "/v1/scores", "/v1/model"} <= set(paths)
    metrics = client.get("/metrics").text
    assert 'salt_requests_total{method="GET",route="/v1/model",status="200"} 1.0' in metrics
    assert "salt_request_latency_seconds_bucket" in metrics and "salt_forward_batch_windows_bucket" in metrics
