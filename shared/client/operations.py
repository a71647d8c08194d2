"""The selector service's API, each call written once as an operation generator (see ``core``).

``Operations`` is the base of both clients: ``@operation`` makes every call here a method of
``SelectorClient`` (returns the value) and of ``AsyncSelectorClient`` (returns an awaitable of it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from shared.client.binding import operation
from shared.client.by_hash import (
    Decoded,
    Digests,
    MissingWindows,
    check_answer,
    check_same_model,
    check_sampled_answer,
    decode_sampled,
    decode_sampled_blobs,
    decode_topk,
    decode_topk_blobs,
    digest_body,
    merged,
    missing_positions,
    windows_at,
)
from shared.client.core import ClientCore, Op, SelectorError, Sleep, Windows, parse_metrics, scores_of, windows_json
from shared.data import PackedDataset
from shared.hashing import window_hash
from shared.labels import SoftLabels, WindowScore
from shared.sampling import DEFAULT_DRAWS, SampledLabels
from shared.wire import ARRAYS, BLOBS, WIRE_MEDIA_TYPE, decode_sampled_wire, decode_wire

Progress = Callable[[int, int], None]
"""Called with (done, total)."""


class Operations(ClientCore):
    """The service's calls; a subclass supplies ``_drive``, which runs an operation with its transport."""

    @operation
    def soft_labels(self, windows: Windows, k: int = 32, temperature: float = 1.0) -> Op[SoftLabels]:
        """Top-k soft labels of (N, L+1) windows: ids/logprobs (N, L, k), tail (N, L)."""
        body = {"windows": windows_json(windows), "k": k, "temperature": temperature}
        r = yield from self._call("POST", "/v1/soft-labels", json=body, headers={"Accept": WIRE_MEDIA_TYPE})
        return decode_wire(r.content)

    @operation
    def soft_labels_by_hash(self, hashes: Digests, windows: MissingWindows, k: int = 32,
                            temperature: float = 1.0, blobs: bool = True) -> Op[SoftLabels]:
        """Top-k soft labels of N windows asked by hash: the service answers the cached ones, and only the
        windows it lacks are sent (once per distinct hash), through ``POST /v1/soft-labels``.

        Args:
            hashes: the windows' hashes (``shared.client.by_hash.Digests``), e.g. ``split.digests[idx]``.
            windows: (N, L+1) windows whose row i hashes to ``hashes[i]``, or a function of the positions the
                service lacks ((M,) int64) returning those M windows.
            k, temperature: label parameters.
            blobs: ask for the cached labels as the cache stores them and check and decode them here: about
                half the bytes on the wire at k = 32, and the decoding done by each trainer instead of the shared
                service. False: the service decodes them (an answer of arrays, as ``soft_labels`` gets).

        Returns:
            Labels in request order: ids/logprobs (N, L, k), tail (N, L), hashes in hex.

        Raises:
            SelectorError: the service failed, or (code ``bad_answer``, ``replicas_differ``) an answer does
                not match what was asked or what its replica's ``/v1/model`` says it serves.
        """
        def check(labels: SoftLabels, meta: dict[str, str], asked: list[str], info: dict[str, Any]) -> None:
            check_answer(labels, meta, hashes=asked, info=info, k=k, temperature=temperature)

        query = {"k": k, "temperature": temperature}
        return (yield from self._by_hash(hashes, windows, query, blobs, (decode_topk, decode_topk_blobs), check))

    @operation
    def sampled_labels_by_hash(self, hashes: Digests, windows: MissingWindows, draws: int = DEFAULT_DRAWS,
                               temperature: float = 1.0, blobs: bool = True) -> Op[SampledLabels]:
        """Sampled soft labels of N windows asked by hash, as ``soft_labels_by_hash`` asks top-k ones: the
        cached windows answered by hash, only the others sent (once per distinct hash).

        Returns:
            Labels in request order: ids/counts (N, L, W), lengths (N,), hashes in hex.

        Raises:
            SelectorError: as ``soft_labels_by_hash`` (an answer of another draws count or kind: ``bad_answer``).
        """
        def check(labels: SampledLabels, meta: dict[str, str], asked: list[str], info: dict[str, Any]) -> None:
            check_sampled_answer(labels, meta, hashes=asked, info=info, draws=draws, temperature=temperature)

        query = {"kind": "sample", "draws": draws, "temperature": temperature}
        return (yield from self._by_hash(hashes, windows, query, blobs, (decode_sampled, decode_sampled_blobs), check))

    def _by_hash(self, hashes: Digests, windows: MissingWindows, query: dict[str, Any], blobs: bool,
                 decoders: tuple[Callable[[bytes], Decoded], Callable[[bytes], Decoded]],
                 check: Callable[[Any, dict[str, str], list[str], dict[str, Any]], None]) -> Op[Any]:
        """Labels of either kind by hash: the cached ones asked with ``query`` (as stored blobs, decoded with
        ``decoders[1]``, or as arrays, with ``decoders[0]``), then the missing windows, and those whose blob
        failed here, sent through ``POST /v1/soft-labels``; each answer checked against what was asked."""
        raw, asked = digest_body(hashes)
        r, info = yield from self._checked_call(
            "POST", "/v1/soft-labels/by-hash", params={**query, "encoding": BLOBS if blobs else ARRAYS},
            content=raw, headers={"Content-Type": "application/octet-stream", "Accept": WIRE_MEDIA_TYPE})
        check_same_model(self._models)
        found, meta, bad = decoders[blobs](r.content)
        lacking = set(missing_positions(meta, len(asked)))
        answered_at = [i for i in range(len(asked)) if i not in lacking]
        lacking.update(answered_at[j] for j in bad if 0 <= j < len(answered_at))  # sent again: recomputed there
        found_at = [i for i in answered_at if i not in lacking]
        check(found, meta, [asked[i] for i in found_at], info)
        if not lacking:
            return found
        missing = sorted(lacking)
        first_at = sorted({asked[i]: i for i in reversed(missing)}.values())  # each missing hash's first place
        body = {"windows": windows_json(windows_at(windows, first_at)), **query}
        r, info = yield from self._checked_call("POST", "/v1/soft-labels", json=body,
                                                headers={"Accept": WIRE_MEDIA_TYPE})
        check_same_model(self._models)
        computed, meta, _ = decoders[0](r.content)
        check(computed, meta, [asked[i] for i in first_at], info)
        if len(first_at) == len(asked):  # nothing cached, no repeats: the answer is the batch
            return computed
        return merged(len(asked), found, found_at, computed, first_at, asked)

    @operation
    def sampled_labels(self, windows: Windows, draws: int = DEFAULT_DRAWS, temperature: float = 1.0
                       ) -> Op[SampledLabels]:
        """Sampled soft labels of (N, L+1) windows: ``draws`` seeded draws per position as unique ids and
        counts (N, L, W)."""
        body = {"windows": windows_json(windows), "kind": "sample", "draws": draws, "temperature": temperature}
        r = yield from self._call("POST", "/v1/soft-labels", json=body, headers={"Accept": WIRE_MEDIA_TYPE})
        return decode_sampled_wire(r.content)

    @operation
    def scores(self, windows: Windows) -> Op[list[WindowScore]]:
        """Per-window scores and embedding of (N, L+1) windows: N ``WindowScore``, in order."""
        return scores_of((yield from self._json("POST", "/v1/scores", json={"windows": windows_json(windows)})))

    @operation
    def model_info(self) -> Op[dict[str, Any]]:
        """The served model: ``{"fingerprint", "tokenizer_hash", "preset", "vocab_size", "block_size", ...}``."""
        return (yield from self._json("GET", "/v1/model"))

    @operation
    def metrics(self) -> Op[dict[str, float]]:
        """``/metrics`` of one replica as ``{sample name with labels: value}`` (see ``parse_metrics``)."""
        return parse_metrics((yield from self._call("GET", "/metrics")).text)

    @operation
    def metrics_by_replica(self) -> Op[list[dict[str, float]]]:
        """``/metrics`` of each base URL in turn (no failover: each replica's own counters)."""
        out = []
        for base in self.base_urls:
            out.append(parse_metrics((yield from self._once(base + "/metrics")).text))
        return out

    @operation
    def register_pool(self, ds: PackedDataset, name: str = "train", split: str = "train", chunk: int = 256,
                      progress: Progress | None = None, indices: Sequence[int] | None = None) -> Op[str]:
        """Register a split's windows (all, or those at ``indices``, in that order) as a pool, then seal it.

        An interrupted upload resumes after the windows already there; a sealed pool is not sent again.
        ``progress(done, total)`` follows the upload. Returns the pool id (a hash of the dataset fingerprint
        and ``name``).
        """
        windows = ds.split(split).windows
        idx = np.arange(len(windows)) if indices is None else np.asarray(indices, dtype=np.int64)
        if len(idx) == 0:
            raise ValueError("a pool needs at least one window")
        pool = yield from self._json("POST", "/v1/pools", json={
            "name": name, "dataset_fingerprint": ds.fingerprint, "tokenizer_hash": ds.tokenizer_hash,
            "window_len": ds.window_len})
        if not pool["sealed"]:
            for start in range(min(pool["resume_from"], len(idx)), len(idx), chunk):
                rows = np.asarray(windows[idx[start : start + chunk]], dtype=np.int64)
                yield from self._call("POST", f"/v1/pools/{pool['id']}/windows", json={
                    "start": start, "hashes": [window_hash(r) for r in rows], "windows": rows.tolist()})
                if progress is not None:
                    progress(start + len(rows), len(idx))
            yield from self._call("POST", f"/v1/pools/{pool['id']}/seal", json={"count": len(idx)})
        if progress is not None:
            progress(len(idx), len(idx))
        return str(pool["id"])

    @operation
    def pool(self, pool_id: str) -> Op[dict[str, Any]]:
        """A pool's record: ``{"id", "name", "count", "uploaded", "resume_from", "sealed", "scored", "scored_by",
        ...}`` (``scored_by``: ``{"model_fingerprint", "precision", "scored"}`` of each model that scored it)."""
        return (yield from self._json("GET", f"/v1/pools/{pool_id}"))

    @operation
    def start_job(self, pool_id: str) -> Op[dict[str, Any]]:
        """Create (or get) the scoring job of a sealed pool with the served model; returns its record."""
        return (yield from self._json("POST", "/v1/jobs", json={"pool_id": pool_id}))

    @operation
    def job(self, job_id: str) -> Op[dict[str, Any]]:
        """A scoring job's record: ``{"id", "pool_id", "status" (queued/running/done/failed), "done", "total",
        "error", ...}``."""
        return (yield from self._json("GET", f"/v1/jobs/{job_id}"))

    @operation
    def wait_job(self, job_id: str, poll_s: float = 0.5, progress: Progress | None = None,
                 timeout_s: float | None = None) -> Op[dict[str, Any]]:
        """Poll every ``poll_s`` until the job is done, calling ``progress(done, total)`` after each poll;
        returns the finished record. Raises SelectorError if it failed or ``timeout_s`` passed."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            job = yield from self._json("GET", f"/v1/jobs/{job_id}")
            if progress is not None:
                progress(job["done"], job["total"])
            if job["status"] == "failed":
                raise SelectorError(0, "job_failed", f"scoring job {job['id']} failed: {job.get('error')}", body=job)
            if job["status"] == "done":
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise SelectorError(0, "job_timeout", f"scoring job {job_id} not done after {timeout_s} s", body=job)
            yield Sleep(poll_s)

    @operation
    def create_selection(self, pool_id: str, method: str, *, count: int | None = None,
                         fraction: float | None = None, diversity: str = "none", seed: int = 0,
                         models: dict[str, str] | None = None, **params: Any) -> Op[dict[str, Any]]:
        """Select ``count`` (or ``fraction`` of the) windows of a scored pool; returns the stored record
        ``{"id", "pool_id", "method", "count", "params", "models", ...}``. ``models``: a two-model method's
        model fingerprint by role (``shared.selection.METHOD_ROLES``), e.g. ``{"learner": fp1, "reference":
        fp2}``. ``params``: the method's own (band_lo, ...)."""
        body = {"pool_id": pool_id, "method": method, "diversity": diversity, "seed": seed, **params}
        body |= {"models": models} if models else {}
        body |= ({"count": count} if count is not None else {}) | (
            {"fraction": fraction} if fraction is not None else {})
        return (yield from self._json("POST", "/v1/selections", json=body))

    @operation
    def selection(self, selection_id: str) -> Op[dict[str, Any]]:
        """A stored selection with its pool ``indices`` (ascending) and window ``hashes``."""
        return (yield from self._json("GET", f"/v1/selections/{selection_id}"))
