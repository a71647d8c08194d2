"""The store's own blobs: scores round trip and are checked."""

from __future__ import annotations

import numpy as np
import pytest

from selector_service.store.codec import pack_scores, unpack_scores
from shared.blobs.labels import BlobError, checksum


def test_score_blob_roundtrip() -> None:
    row = {"n_tokens": 32, "mean_loss": 1.5, "median_loss": 1.25, "top1_acc": 0.5, "mean_entropy": 2.0,
           "salt_ds": float("nan")}
    emb = np.arange(6, dtype=np.float16)
    blob = pack_scores(row, emb)
    s = unpack_scores(blob, checksum(blob), "h")
    assert (s.n_tokens, s.mean_loss, s.median_loss, s.salt_ds) == (32, 1.5, 1.25, None)
    np.testing.assert_array_equal(s.embedding, emb)
    with pytest.raises(BlobError):
        unpack_scores(blob, "0" * 32, "h")
