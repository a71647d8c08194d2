"""The label cache: answer windows from the store, compute only the misses, store what was computed."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from starlette.concurrency import run_in_threadpool

from selector_service.cache.batching import Batcher
from selector_service.cache.slm import Computed, SLMRunner, Work
from selector_service.config import Settings
from selector_service.metrics import Metrics
from selector_service.store.cache_rows import SCORES_PARAMS, Row, get_rows, labels_params, put_rows, sampled_params
from selector_service.store.codec import pack_scores, unpack_scores
from selector_service.store.database import Database
from shared.blobs.label_batch import LabelBatch, unpack_label_batch
from shared.blobs.labels import BlobError, Packer, checksum, unpack_labels, unpack_sampled
from shared.hashing import window_hash
from shared.labels import WindowScore

log = logging.getLogger("selector_service")

LabelArrays = tuple[np.ndarray, np.ndarray, np.ndarray]  # ids (L, k), logprobs (L, k) f16, tail (L,) f16
SampledArrays = tuple[np.ndarray, np.ndarray]  # ids (L, W), counts (L, W)


class LabelCache:
    """Soft labels and scores for windows, through the cache and the dynamic batcher.

    A blob that fails its checksum is counted, recomputed and replaced on the next store, never served.
    """

    def __init__(self, settings: Settings, slm: SLMRunner, database: Database, metrics: Metrics, *,
                 forward_pool: ThreadPoolExecutor | None = None) -> None:
        self.settings = settings
        self.slm = slm
        self.database = database
        self.metrics = metrics
        self.batcher = Batcher(slm, self._persist, metrics, max_batch_tokens=settings.max_batch_tokens,
                               max_wait_ms=settings.max_wait_ms, forward_pool=forward_pool)
        self._bad: set[tuple[str, str]] = set()
        self._bad_lock = threading.Lock()

    async def soft_labels(
        self, windows: list[np.ndarray], k: int, temperature: float
    ) -> tuple[list[str], list[LabelArrays]]:
        """Labels of each window, answered from the cache or computed (repeats share one computation).

        Args:
            windows: (L_i + 1,) int64 ids per window, already checked against the model.
            k: ids kept per predicted position.
            temperature: softmax temperature of the labels.

        Returns:
            The window hashes, and per window ids (L_i, k), logprobs (L_i, k) float16 and tail (L_i,) float16.
        """
        params = labels_params(k, temperature)
        hashes, unique = _unique(windows)
        found = await self._lookup(unique, params, lambda row, h: unpack_labels(row.blob, row.checksum))
        misses = [h for h in unique if h not in found]
        if misses:
            computed = await self.batcher.compute([Work(h, unique[h], {(k, temperature)}) for h in misses])
            for h, c in zip(misses, computed, strict=True):
                found[h] = c.labels[(k, temperature)]
        return hashes, [found[h] for h in hashes]

    def cached_labels(self, hashes: list[str], k: int, temperature: float) -> tuple[list[int], LabelBatch]:
        """Labels of the windows already cached, found by hash alone: nothing is computed or hashed. Blocking
        (one database query per 500 keys, one batched decode): call it from a worker thread.

        Args:
            hashes: window hashes (hex), repeats allowed.
            k, temperature: the label parameters.

        Returns:
            The positions in ``hashes`` found, ascending, and their labels in that order. A damaged blob
            counts as not found (and is replaced when the window is computed again).
        """
        params = labels_params(k, temperature)
        unique = list(dict.fromkeys(hashes))
        rows = get_rows(database=self.database, model=self.slm.model_key, params=[params], hashes=unique)
        stored = [rows[(h, params)] for h in unique if (h, params) in rows]
        batch, bad = unpack_label_batch([r.blob for r in stored], [r.checksum for r in stored], k)
        self._damaged([stored[i].window_hash for i in bad], params)
        bad_set = set(bad)
        row_of = {r.window_hash: j for j, r in enumerate(r for i, r in enumerate(stored) if i not in bad_set)}
        # Misses are counted when their windows are sent (the client sends them next), not twice.
        self.metrics.cache_hits.inc(len(row_of))
        positions = [i for i, h in enumerate(hashes) if h in row_of]
        take = np.fromiter((row_of[hashes[i]] for i in positions), np.int64, len(positions))
        if not np.array_equal(take, np.arange(len(row_of))):  # repeats or a different order: gather
            batch = LabelBatch(batch.ids[take], batch.logprobs[take], batch.tail[take], batch.lengths[take])
        return positions, batch

    def cached_blobs(self, hashes: list[str], temperature: float, *, k: int | None = None, draws: int | None = None
                     ) -> tuple[list[int], list[Row]]:
        """The stored rows (blob and checksum, not decoded nor checked: the client does both) of the windows
        already cached with top-k labels (``k``) or sampled ones (``draws``) at ``temperature``, found by hash
        alone. Blocking: call it from a worker thread. Returns the positions in ``hashes`` found, ascending,
        and their rows."""
        params = sampled_params(draws, temperature) if draws is not None else labels_params(int(k or 0), temperature)
        rows = get_rows(database=self.database, model=self.slm.model_key, params=[params],
                        hashes=list(dict.fromkeys(hashes)))
        positions = [i for i, h in enumerate(hashes) if (h, params) in rows]
        self.metrics.cache_hits.inc(len({hashes[i] for i in positions}))  # misses: counted when sent
        return positions, [rows[(hashes[i], params)] for i in positions]

    def cached_sampled(self, hashes: list[str], draws: int, temperature: float
                       ) -> tuple[list[int], list[SampledArrays]]:
        """Sampled labels of the windows already cached, found by hash alone, as ``cached_labels`` finds
        top-k ones (blocking: call it from a worker thread). Returns the positions in ``hashes`` found,
        ascending, and each one's ids and counts (L, W); a damaged blob counts as not found."""
        found = self._decoded_rows(list(dict.fromkeys(hashes)), sampled_params(draws, temperature),
                                   lambda row, h: unpack_sampled(row.blob, row.checksum))
        self.metrics.cache_hits.inc(len(found))  # misses are counted when their windows are sent
        positions = [i for i, h in enumerate(hashes) if h in found]
        return positions, [found[hashes[i]] for i in positions]

    def _decoded_rows(self, hashes: list[str], params: str, decode) -> dict:  # type: ignore[no-untyped-def]
        """The cached rows of ``hashes`` at ``params``, each decoded by ``decode(row, hash)``; a row that fails
        to decode is left out and marked damaged. Blocking: one database query per 500 keys."""
        rows = get_rows(database=self.database, model=self.slm.model_key, params=[params], hashes=hashes)
        found, bad = {}, []
        for h in hashes:
            row = rows.get((h, params))
            if row is None:
                continue
            try:
                found[h] = decode(row, h)
            except BlobError:
                bad.append(h)
        self._damaged(bad, params)
        return found

    def _damaged(self, hashes: list[str], params: str) -> None:
        """Count blobs that failed their checks and mark them to be replaced when computed again."""
        if not hashes:
            return
        log.warning("%d cached blobs of %s are damaged; recomputing them", len(hashes), params)
        self.metrics.cache_bad_blobs.inc(len(hashes))
        with self._bad_lock:
            self._bad.update((h, params) for h in hashes)

    async def sampled_labels(
        self, windows: list[np.ndarray], draws: int, temperature: float
    ) -> tuple[list[str], list[SampledArrays]]:
        """Sampled labels of each window, answered from the cache or computed, as ``soft_labels`` does.

        Args:
            windows: (L_i + 1,) int64 ids per window, already checked against the model.
            draws: N, draws per predicted position.
            temperature: temperature of the distribution drawn from.

        Returns:
            The window hashes, and per window ids (L_i, W_i) and counts (L_i, W_i) (0: padding).
        """
        params = sampled_params(draws, temperature)
        hashes, unique = _unique(windows)
        found = await self._lookup(unique, params, lambda row, h: unpack_sampled(row.blob, row.checksum))
        misses = [h for h in unique if h not in found]
        if misses:
            computed = await self.batcher.compute([Work(h, unique[h], samples={(draws, temperature)}) for h in misses])
            for h, c in zip(misses, computed, strict=True):
                found[h] = c.sampled[(draws, temperature)]
        return hashes, [found[h] for h in hashes]

    async def scores(self, windows: list[np.ndarray]) -> list[WindowScore]:
        """Scores and (C,) float16 embedding of each window, in order, answered from the cache or computed
        (the computation stores the labels at the default k too)."""
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
        found = await run_in_threadpool(self._decoded_rows, list(unique), params, decode)
        self.metrics.cache_hits.inc(len(found))
        self.metrics.cache_misses.inc(len(unique) - len(found))
        return found

    def _persist(self, works: list[Work], results: list[Computed]) -> None:
        """Store every label set and the scores of each computed window (runs on the store thread; the label
        blobs of a batch share one ``Packer``)."""
        packer = Packer(self.slm.vocab_size)
        rows = []
        for w, c in zip(works, results, strict=True):
            blob = pack_scores(c.scores, c.embedding)
            rows.append(Row(w.window_hash, SCORES_PARAMS, blob, checksum(blob)))
            for (k, t), (ids, lp, tail) in c.labels.items():
                blob = packer.labels(ids, lp, tail)
                rows.append(Row(w.window_hash, labels_params(k, t), blob, checksum(blob)))
            for (n, t), (ids, counts) in c.sampled.items():
                blob = packer.sampled(ids, counts, n)
                rows.append(Row(w.window_hash, sampled_params(n, t), blob, checksum(blob)))
        with self._bad_lock:
            replace = {(r.window_hash, r.params) for r in rows} & self._bad
        put_rows(database=self.database, model=self.slm.model_key, rows=rows, replace=replace)
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
