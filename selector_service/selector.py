"""The service's core: answer windows from the cache, compute only the misses, store what was computed."""

from __future__ import annotations

import logging
import threading

import numpy as np
from starlette.concurrency import run_in_threadpool

from selector_service.batching import Batcher
from selector_service.config import Settings
from selector_service.engine import Computed, Engine, Work
from selector_service.metrics import Metrics
from selector_service.store import SCORES_PARAMS, Row, Store, labels_params
from shared.hashing import window_hash
from shared.softlabels import (
    BlobError,
    WindowScore,
    checksum,
    pack_labels,
    pack_scores,
    unpack_labels,
    unpack_scores,
)

log = logging.getLogger("selector_service")

LabelArrays = tuple[np.ndarray, np.ndarray, np.ndarray]  # ids (L, k), logprobs (L, k) f16, tail (L,) f16


class Selector:
    """Soft labels and scores for windows, through the cache and the dynamic batcher."""

    def __init__(self, settings: Settings, engine: Engine, store: Store, metrics: Metrics) -> None:
        self.settings = settings
        self.engine = engine
        self.store = store
        self.metrics = metrics
        self.batcher = Batcher(engine, self._persist, metrics, max_batch_tokens=settings.max_batch_tokens,
                               max_wait_ms=settings.max_wait_ms)
        self._bad: set[tuple[str, str]] = set()
        self._bad_lock = threading.Lock()

    async def soft_labels(
        self, windows: list[np.ndarray], k: int, temperature: float
    ) -> tuple[list[str], list[LabelArrays]]:
        """Labels of each window (in order; repeats share one computation)."""
        params = labels_params(k, temperature)
        hashes, unique = _unique(windows)
        found = await self._lookup(unique, params, lambda row, h: unpack_labels(row.blob, row.checksum))
        misses = [h for h in unique if h not in found]
        if misses:
            computed = await self.batcher.compute([Work(h, unique[h], {(k, temperature)}) for h in misses])
            for h, c in zip(misses, computed, strict=True):
                found[h] = c.labels[(k, temperature)]
        return hashes, [found[h] for h in hashes]

    async def scores(self, windows: list[np.ndarray]) -> list[WindowScore]:
        """Scores and embedding of each window (in order)."""
        hashes, unique = _unique(windows)
        found = await self._lookup(unique, SCORES_PARAMS, lambda row, h: unpack_scores(row.blob, row.checksum, h))
        misses = [h for h in unique if h not in found]
        if misses:
            param = (self.settings.default_k, 1.0)
            computed = await self.batcher.compute([Work(h, unique[h], {param}) for h in misses])
            for h, c in zip(misses, computed, strict=True):
                found[h] = _score_of(h, c)
        return [found[h] for h in hashes]

    async def _lookup(self, unique: dict[str, np.ndarray], params: str, decode) -> dict:  # type: ignore[no-untyped-def]
        rows = await run_in_threadpool(self.store.get, model=self.engine.model_key, params=[params],
                                       hashes=list(unique))
        found = {}
        for h in unique:
            row = rows.get((h, params))
            if row is None:
                continue
            try:
                found[h] = decode(row, h)
            except BlobError as e:
                log.warning("cached blob %s/%s is damaged (%s); recomputing it", h, params, e)
                self.metrics.cache_bad_blobs.inc()
                with self._bad_lock:
                    self._bad.add((h, params))
        self.metrics.cache_hits.inc(len(found))
        self.metrics.cache_misses.inc(len(unique) - len(found))
        return found

    def _persist(self, works: list[Work], results: list[Computed]) -> None:
        """Store every label set and the scores of each computed window (runs on the store thread)."""
        vocab = self.engine.vocab_size
        rows = []
        for w, c in zip(works, results, strict=True):
            blob = pack_scores(c.scores, c.embedding)
            rows.append(Row(w.window_hash, SCORES_PARAMS, blob, checksum(blob)))
            for (k, t), (ids, lp, tail) in c.labels.items():
                blob = pack_labels(ids, lp, tail, vocab)
                rows.append(Row(w.window_hash, labels_params(k, t), blob, checksum(blob)))
        with self._bad_lock:
            replace = {(r.window_hash, r.params) for r in rows} & self._bad
        self.store.put(model=self.engine.model_key, rows=rows, replace=replace)
        if replace:
            with self._bad_lock:
                self._bad -= replace


def _unique(windows: list[np.ndarray]) -> tuple[list[str], dict[str, np.ndarray]]:
    hashes = [window_hash(w) for w in windows]
    unique: dict[str, np.ndarray] = {}
    for h, w in zip(hashes, windows, strict=True):
        unique.setdefault(h, w)
    return hashes, unique


def _score_of(h: str, c: Computed) -> WindowScore:
    s = c.scores
    ds = s["salt_ds"]
    return WindowScore(h, int(s["n_tokens"]), s["mean_loss"], s["median_loss"], s["top1_acc"],
                       s["mean_entropy"], None if np.isnan(ds) else ds, c.embedding)
