"""Typed client of the selector service (sync and async), used by the trainer and the tests.

Soft labels travel in the binary wire format (``shared.softlabels``). Connect errors, timeouts and 503
answers are retried with exponential backoff and jitter until ``retry_deadline_s``, moving on to the
next of the base URLs given; successive requests start at successive URLs (round-robin over replicas).
Any other 4xx/5xx raises ``SelectorError`` carrying the service's error body.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import numpy as np

from shared.data import PackedDataset
from shared.hashing import window_hash
from shared.softlabels import WIRE_MEDIA_TYPE, SoftLabels, WindowScore, decode_wire

_RETRY_STATUS = {502, 503, 504}
_RETRY_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadTimeout, httpx.RemoteProtocolError,
                 httpx.PoolTimeout)
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{.*\})?)\s+(\S+)")


class SelectorError(Exception):
    """The service answered an error (or could not be reached before the retry deadline)."""

    def __init__(self, status: int, code: str, message: str, request_id: str | None = None,
                 body: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}" + (f" (request {request_id})" if request_id else ""))
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        self.body = body


def _windows_json(windows: np.ndarray | Sequence[Sequence[int]]) -> list[list[int]]:
    if isinstance(windows, np.ndarray):
        return windows.astype(np.int64, copy=False).tolist()
    return [list(map(int, w)) for w in windows]


def _error_of(r: httpx.Response) -> SelectorError:
    try:
        body = r.json()
        err = body["error"]
        return SelectorError(r.status_code, err.get("code", "error"), err.get("message", ""), err.get("request_id"),
                             body)
    except (ValueError, KeyError, TypeError):
        return SelectorError(r.status_code, "error", r.text[:200])


def _scores_of(body: dict[str, Any]) -> list[WindowScore]:
    return [
        WindowScore(w["hash"], w["n_tokens"], w["mean_loss"], w["median_loss"], w["top1_acc"], w["mean_entropy"],
                    w["salt_ds"], np.asarray(w["embedding"], dtype=np.float16))
        for w in body["windows"]
    ]


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text exposition as {sample name with labels: value}."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and (m := _SAMPLE.match(line)):
            out[m.group(1)] = float(m.group(2))
    return out


class _Base:
    def __init__(self, base_url: str | Sequence[str], *, api_key: str | None = None, timeout: float = 60.0,
                 retry_deadline_s: float = 30.0, backoff_s: float = 0.1, max_backoff_s: float = 5.0) -> None:
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        if not urls:
            raise ValueError("give at least one base URL")
        self.base_urls = [u.rstrip("/") for u in urls]
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = timeout
        self.retry_deadline_s = retry_deadline_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._turn = itertools.count()  # next() is atomic under the GIL: safe across threads

    def _first(self) -> int:
        """Replica a new request starts at: round-robin over the base URLs, one step per request."""
        return next(self._turn) % len(self.base_urls)

    def _url(self, first: int, attempt: int, path: str) -> str:
        # A retry (connect error, 503) moves on to the next replica: failover without a health table.
        return self.base_urls[(first + attempt) % len(self.base_urls)] + path

    def _delay(self, attempt: int, r: httpx.Response | None) -> float:
        delay = min(self.max_backoff_s, self.backoff_s * 2**attempt) * (0.5 + random.random())
        if r is not None and (ra := r.headers.get("retry-after", "")).isdigit():
            delay = max(delay, min(float(ra), self.max_backoff_s))
        return delay

    @staticmethod
    def _accept(r: httpx.Response) -> bool:
        """True for a success; False for a status worth retrying; raises SelectorError for any other error."""
        if r.status_code < 400:
            return True
        if r.status_code not in _RETRY_STATUS:
            raise _error_of(r)
        return False

    def _backoff(self, attempt: int, r: httpx.Response | None, failure: Exception, deadline: float) -> float:
        """Seconds to wait before the next attempt; raises the failure once the deadline would pass."""
        delay = self._delay(attempt, r)
        if time.monotonic() + delay > deadline:
            if isinstance(failure, SelectorError):
                raise failure
            raise SelectorError(0, "unreachable", f"selector service unreachable: {failure}") from failure
        return delay

    def _with_auth(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        return {**kwargs, "headers": {**self.headers, **kwargs.get("headers", {})}}

    @staticmethod
    def _labels_body(windows: Any, k: int, temperature: float) -> dict[str, Any]:
        return {"windows": _windows_json(windows), "k": k, "temperature": temperature}

    @staticmethod
    def _selection_body(pool_id: str, method: str, count: int | None, fraction: float | None, diversity: str,
                        seed: int, params: dict[str, Any]) -> dict[str, Any]:
        body = {"pool_id": pool_id, "method": method, "diversity": diversity, "seed": seed, **params}
        return body | ({"count": count} if count is not None else {}) | (
            {"fraction": fraction} if fraction is not None else {})

    @staticmethod
    def _job_finished(job: dict[str, Any]) -> bool:
        if job["status"] == "failed":
            raise SelectorError(0, "job_failed", f"scoring job {job['id']} failed: {job.get('error')}", body=job)
        return job["status"] == "done"


class SelectorClient(_Base):
    """Blocking client. ``SelectorClient("http://127.0.0.1:8000")`` or a list of replicas' URLs."""

    def __init__(self, base_url: str | Sequence[str], *, http_client: httpx.Client | None = None,
                 **kwargs: Any) -> None:
        super().__init__(base_url, **kwargs)
        # http_client: bring your own (e.g. FastAPI's TestClient); it gets this client's headers per request.
        self._http = http_client or httpx.Client(timeout=self.timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SelectorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def soft_labels(self, windows: np.ndarray | Sequence[Sequence[int]], k: int = 32,
                    temperature: float = 1.0) -> SoftLabels:
        """Top-k soft labels of (N, L+1) windows: ids/logprobs (N, L, k), tail (N, L)."""
        r = self._request("POST", "/v1/soft-labels", json=self._labels_body(windows, k, temperature),
                          headers={"Accept": WIRE_MEDIA_TYPE})
        return decode_wire(r.content)

    def scores(self, windows: np.ndarray | Sequence[Sequence[int]]) -> list[WindowScore]:
        """Per-window scores and embedding."""
        return _scores_of(self._request("POST", "/v1/scores", json={"windows": _windows_json(windows)}).json())

    def model_info(self) -> dict[str, Any]:
        return self._request("GET", "/v1/model").json()

    def metrics(self) -> dict[str, float]:
        return parse_metrics(self._request("GET", "/metrics").text)

    def metrics_by_replica(self) -> list[dict[str, float]]:
        """``/metrics`` of each base URL in turn (no failover: each replica's own counters)."""
        out = []
        for base in self.base_urls:
            r = self._http.get(base + "/metrics", **self._with_auth({}))
            if r.status_code >= 400:
                raise _error_of(r)
            out.append(parse_metrics(r.text))
        return out

    def register_pool(self, ds: PackedDataset, name: str = "train", split: str = "train", chunk: int = 256,
                      progress: Callable[[int, int], None] | None = None,
                      indices: Sequence[int] | None = None) -> str:
        """Register a split's windows (all, or those at ``indices``, in that order) as a pool, then seal it.

        An interrupted upload resumes after the windows already there; a sealed pool is not sent again.
        Returns the pool id (a hash of the dataset fingerprint and ``name``).
        """
        windows = ds.split(split).windows
        idx = np.arange(len(windows)) if indices is None else np.asarray(indices, dtype=np.int64)
        if len(idx) == 0:
            raise ValueError("a pool needs at least one window")
        pool = self._request("POST", "/v1/pools", json={
            "name": name, "dataset_fingerprint": ds.fingerprint, "tokenizer_hash": ds.tokenizer_hash,
            "window_len": ds.window_len}).json()
        if not pool["sealed"]:
            for start in range(min(pool["resume_from"], len(idx)), len(idx), chunk):
                rows = np.asarray(windows[idx[start : start + chunk]], dtype=np.int64)
                self._request("POST", f"/v1/pools/{pool['id']}/windows", json={
                    "start": start, "hashes": [window_hash(r) for r in rows], "windows": rows.tolist()})
                if progress is not None:
                    progress(start + len(rows), len(idx))
            self._request("POST", f"/v1/pools/{pool['id']}/seal", json={"count": len(idx)})
        if progress is not None:
            progress(len(idx), len(idx))
        return str(pool["id"])

    def pool(self, pool_id: str) -> dict[str, Any]:
        return self._request("GET", f"/v1/pools/{pool_id}").json()

    def start_job(self, pool_id: str) -> dict[str, Any]:
        """Create (or get) the scoring job of a sealed pool with the served model."""
        return self._request("POST", "/v1/jobs", json={"pool_id": pool_id}).json()

    def job(self, job_id: str) -> dict[str, Any]:
        return self._request("GET", f"/v1/jobs/{job_id}").json()

    def wait_job(self, job_id: str, poll_s: float = 0.5, progress: Callable[[int, int], None] | None = None,
                 timeout_s: float | None = None) -> dict[str, Any]:
        """Poll until the job is done; raises SelectorError if it failed or ``timeout_s`` passed."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            job = self.job(job_id)
            if progress is not None:
                progress(job["done"], job["total"])
            if self._job_finished(job):
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise SelectorError(0, "job_timeout", f"scoring job {job_id} not done after {timeout_s} s", body=job)
            time.sleep(poll_s)

    def create_selection(self, pool_id: str, method: str, *, count: int | None = None,
                         fraction: float | None = None, diversity: str = "none", seed: int = 0,
                         **params: Any) -> dict[str, Any]:
        """Select ``count`` (or ``fraction`` of the) windows of a scored pool; returns the stored record."""
        body = self._selection_body(pool_id, method, count, fraction, diversity, seed, params)
        return self._request("POST", "/v1/selections", json=body).json()

    def selection(self, selection_id: str) -> dict[str, Any]:
        """A stored selection with its pool ``indices`` (ascending) and window ``hashes``."""
        return self._request("GET", f"/v1/selections/{selection_id}").json()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        deadline = time.monotonic() + self.retry_deadline_s
        first = self._first()
        attempt = 0
        while True:
            r: httpx.Response | None = None
            try:
                r = self._http.request(method, self._url(first, attempt, path), **self._with_auth(kwargs))
                if self._accept(r):
                    return r
                failure: Exception = _error_of(r)
            except _RETRY_ERRORS as e:
                failure = e
            time.sleep(self._backoff(attempt, r, failure, deadline))
            attempt += 1


class AsyncSelectorClient(_Base):
    """asyncio client with the same methods as ``SelectorClient``."""

    def __init__(self, base_url: str | Sequence[str], *, http_client: httpx.AsyncClient | None = None,
                 **kwargs: Any) -> None:
        super().__init__(base_url, **kwargs)
        self._http = http_client or httpx.AsyncClient(timeout=self.timeout)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncSelectorClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def soft_labels(self, windows: np.ndarray | Sequence[Sequence[int]], k: int = 32,
                          temperature: float = 1.0) -> SoftLabels:
        r = await self._request("POST", "/v1/soft-labels", json=self._labels_body(windows, k, temperature),
                                headers={"Accept": WIRE_MEDIA_TYPE})
        return decode_wire(r.content)

    async def scores(self, windows: np.ndarray | Sequence[Sequence[int]]) -> list[WindowScore]:
        r = await self._request("POST", "/v1/scores", json={"windows": _windows_json(windows)})
        return _scores_of(r.json())

    async def model_info(self) -> dict[str, Any]:
        return (await self._request("GET", "/v1/model")).json()

    async def metrics(self) -> dict[str, float]:
        return parse_metrics((await self._request("GET", "/metrics")).text)

    async def pool(self, pool_id: str) -> dict[str, Any]:
        return (await self._request("GET", f"/v1/pools/{pool_id}")).json()

    async def start_job(self, pool_id: str) -> dict[str, Any]:
        return (await self._request("POST", "/v1/jobs", json={"pool_id": pool_id})).json()

    async def job(self, job_id: str) -> dict[str, Any]:
        return (await self._request("GET", f"/v1/jobs/{job_id}")).json()

    async def wait_job(self, job_id: str, poll_s: float = 0.5, progress: Callable[[int, int], None] | None = None,
                       timeout_s: float | None = None) -> dict[str, Any]:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            job = await self.job(job_id)
            if progress is not None:
                progress(job["done"], job["total"])
            if self._job_finished(job):
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise SelectorError(0, "job_timeout", f"scoring job {job_id} not done after {timeout_s} s", body=job)
            await asyncio.sleep(poll_s)

    async def create_selection(self, pool_id: str, method: str, *, count: int | None = None,
                               fraction: float | None = None, diversity: str = "none", seed: int = 0,
                               **params: Any) -> dict[str, Any]:
        body = self._selection_body(pool_id, method, count, fraction, diversity, seed, params)
        return (await self._request("POST", "/v1/selections", json=body)).json()

    async def selection(self, selection_id: str) -> dict[str, Any]:
        return (await self._request("GET", f"/v1/selections/{selection_id}")).json()

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        deadline = time.monotonic() + self.retry_deadline_s
        first = self._first()
        attempt = 0
        while True:
            r: httpx.Response | None = None
            try:
                r = await self._http.request(method, self._url(first, attempt, path), **self._with_auth(kwargs))
                if self._accept(r):
                    return r
                failure: Exception = _error_of(r)
            except _RETRY_ERRORS as e:
                failure = e
            await asyncio.sleep(self._backoff(attempt, r, failure, deadline))
            attempt += 1
