"""Client retries on 503 and connect errors, and raises the service's error body on other 4xx.

Each behaviour is checked on the blocking and on the asyncio client, both over ``httpx.MockTransport``.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import random
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pytest

from shared.client import AsyncSelectorClient, SelectorClient, SelectorError, parse_metrics
from shared.client.core import Send, Sleep
from shared.hashing import window_hash
from shared.wire import WIRE_MEDIA_TYPE, encode_wire

Handler = Callable[[httpx.Request], httpx.Response]
KINDS = ["sync", "async"]


class Mocked:
    """A client of either kind over a mock transport; an async call is run to its end with ``asyncio.run``."""

    def __init__(self, kind: str, handler: Handler, base_url: str | list[str], **kwargs: Any) -> None:
        transport = httpx.MockTransport(handler)
        if kind == "sync":
            self.client: Any = SelectorClient(base_url, http_client=httpx.Client(transport=transport), **kwargs)
        else:
            self.client = AsyncSelectorClient(base_url, http_client=httpx.AsyncClient(transport=transport), **kwargs)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.client, name)
        if isinstance(self.client, SelectorClient):
            return method
        return lambda *args, **kwargs: asyncio.run(method(*args, **kwargs))


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Seconds each client slept for, in order; sleeping advances the clock at once. The jitter factor is 1."""
    slept: list[float] = []
    clock = time.monotonic

    async def async_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(time, "sleep", slept.append)
    monkeypatch.setattr(asyncio, "sleep", async_sleep)
    monkeypatch.setattr(time, "monotonic", lambda: clock() + sum(slept))
    monkeypatch.setattr(random, "random", lambda: 0.5)
    return slept


def unavailable(retry_after: str | None = None) -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return httpx.Response(503, headers=headers,
                          json={"error": {"code": "database_unavailable", "message": "m", "request_id": "r"}})


@pytest.mark.parametrize("kind", KINDS)
def test_retries_503_then_succeeds(kind: str) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        if len(calls) < 3:
            return unavailable("0")
        return httpx.Response(200, json={"preset": "slm"})

    c = Mocked(kind, handler, ["http://a", "http://b"], backoff_s=0.01, api_key="k")
    assert c.model_info() == {"preset": "slm"}
    assert calls == ["http://a/v1/model", "http://b/v1/model", "http://a/v1/model"]  # rotates over replicas


@pytest.mark.parametrize("kind", KINDS)
def test_4xx_raises_with_the_error_body_without_retrying(kind: str) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.headers.get("authorization"))
        return httpx.Response(401, json={"error": {"code": "unauthorized", "message": "bad key", "request_id": "r1"}})

    c = Mocked(kind, handler, "http://a", api_key="k")
    with pytest.raises(SelectorError) as e:
        c.scores([[1, 2]])
    assert (e.value.status, e.value.code, e.value.request_id) == (401, "unauthorized", "r1")
    assert calls == ["Bearer k"]


@pytest.mark.parametrize("kind", KINDS)
def test_503_past_the_deadline_raises(kind: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"error": {"code": "unavailable", "message": "m", "request_id": "r"}})

    c = Mocked(kind, handler, "http://a", retry_deadline_s=0.2, backoff_s=0.01)
    with pytest.raises(SelectorError) as e:
        c.model_info()
    assert e.value.status == 503


def test_parse_metrics() -> None:
    text = '# HELP x y\n# TYPE x counter\nsalt_cache_hits_total 3.0\nsalt_requests_total{route="/a b",method="GET"} 2\n'
    assert parse_metrics(text) == {"salt_cache_hits_total": 3.0, 'salt_requests_total{route="/a b",method="GET"}': 2.0}


@pytest.mark.parametrize("kind", KINDS)
def test_requests_spread_over_replicas_and_fail_over(kind: str) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.host)
        if request.url.host == "b" and len(calls) > 3:
            raise httpx.ConnectError("down", request=request)
        return httpx.Response(200, json={"preset": "slm"})

    c = Mocked(kind, handler, ["http://a", "http://b"], backoff_s=0.01)
    for _ in range(3):
        c.model_info()
    assert calls == ["a", "b", "a"]  # round-robin, one replica per request
    c.model_info()  # starts at b, which is down now: the retry goes to a
    assert calls[3:] == ["b", "a"]


@pytest.mark.parametrize("kind", KINDS)
def test_backoff_doubles_and_retry_after_is_honoured_up_to_the_cap(kind: str, sleeps: list[float]) -> None:
    answers = [unavailable(), unavailable(), unavailable("2"), unavailable("100"), unavailable("not-a-number")]

    def handler(request: httpx.Request) -> httpx.Response:
        return answers.pop(0) if answers else httpx.Response(200, json={"preset": "slm"})

    c = Mocked(kind, handler, "http://a", backoff_s=0.25, max_backoff_s=3.0)
    assert c.model_info() == {"preset": "slm"}
    # 0.25 * 2**attempt (capped at 3), raised to Retry-After (itself capped at 3); a bad header is ignored.
    assert sleeps == [0.25, 0.5, 2.0, 3.0, 3.0]


@pytest.mark.parametrize("kind", KINDS)
def test_connect_errors_past_the_deadline_raise_unreachable(kind: str, sleeps: list[float]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    c = Mocked(kind, handler, "http://a", retry_deadline_s=1.0, backoff_s=0.1, max_backoff_s=5.0)
    with pytest.raises(SelectorError) as e:
        c.model_info()
    assert (e.value.status, e.value.code) == (0, "unreachable")
    assert sleeps == [0.1, 0.2, 0.4]  # the next wait (0.8 s) would pass the deadline
    assert isinstance(e.value.__cause__, httpx.ConnectError)


def jobs_service(states: list[dict[str, Any]], seen: list[str]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(200, json={"id": "j1", **states.pop(0)})

    return handler


@pytest.mark.parametrize("kind", KINDS)
def test_wait_job_polls_with_progress_until_done(kind: str, sleeps: list[float]) -> None:
    states = [{"status": "queued", "done": 0, "total": 4}, {"status": "running", "done": 2, "total": 4},
              {"status": "done", "done": 4, "total": 4}]
    seen: list[str] = []
    progress: list[tuple[int, int]] = []
    c = Mocked(kind, jobs_service(states, seen), "http://a")
    job = c.wait_job("j1", poll_s=0.25, progress=lambda done, total: progress.append((done, total)))
    assert job == {"id": "j1", "status": "done", "done": 4, "total": 4}
    assert progress == [(0, 4), (2, 4), (4, 4)]
    assert seen == ["/v1/jobs/j1"] * 3
    assert sleeps == [0.25, 0.25]


@pytest.mark.parametrize("kind", KINDS)
def test_wait_job_raises_when_the_job_failed_or_the_timeout_passed(kind: str, sleeps: list[float]) -> None:
    failed = {"status": "failed", "done": 1, "total": 4, "error": "boom"}
    c = Mocked(kind, jobs_service([{"status": "running", "done": 0, "total": 4}, failed], []), "http://a")
    with pytest.raises(SelectorError) as e:
        c.wait_job("j1", poll_s=0.1)
    assert (e.value.code, e.value.body) == ("job_failed", {"id": "j1", **failed})
    assert "boom" in str(e.value)

    c = Mocked(kind, jobs_service([{"status": "running", "done": 0, "total": 4}], []), "http://a")
    with pytest.raises(SelectorError) as e:
        c.wait_job("j1", poll_s=0.1, timeout_s=0)
    assert e.value.code == "job_timeout"
    assert sleeps == [0.1]  # only the failed job's poll slept


def fake_dataset(n: int = 10, length: int = 5) -> Any:
    """What ``register_pool`` reads of a PackedDataset: the split's windows and the dataset's identity."""
    windows = np.arange(n * length, dtype=np.uint16).reshape(n, length)
    return SimpleNamespace(split=lambda name: SimpleNamespace(windows=windows), fingerprint="fp",
                           tokenizer_hash="th", window_len=length)


def pools_service(pool: dict[str, Any], seen: list[tuple[str, Any]]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, json.loads(request.content)))
        return httpx.Response(200, json=pool if request.url.path == "/v1/pools" else {})

    return handler


@pytest.mark.parametrize("kind", KINDS)
def test_register_pool_resumes_after_the_windows_already_sent(kind: str) -> None:
    seen: list[tuple[str, Any]] = []
    progress: list[tuple[int, int]] = []
    ds = fake_dataset()
    rows = ds.split("train").windows
    c = Mocked(kind, pools_service({"id": "p1", "sealed": False, "resume_from": 4}, seen), "http://a")
    order = [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
    pool_id = c.register_pool(ds, name="n", chunk=3, indices=order, progress=lambda d, t: progress.append((d, t)))
    assert pool_id == "p1"
    assert seen[0] == ("/v1/pools", {"name": "n", "dataset_fingerprint": "fp", "tokenizer_hash": "th",
                                     "window_len": 5})
    uploads = [(path, body["start"], body["windows"], body["hashes"]) for path, body in seen[1:-1]]
    expected = [(4, [5, 4, 3]), (7, [2, 1, 0])]  # positions 0-3 of ``order`` are on the service already
    assert uploads == [("/v1/pools/p1/windows", start, rows[idx].tolist(), [window_hash(rows[i]) for i in idx])
                       for start, idx in expected]
    assert seen[-1] == ("/v1/pools/p1/seal", {"count": 10})
    assert progress == [(7, 10), (10, 10), (10, 10)]


@pytest.mark.parametrize("kind", KINDS)
def test_register_pool_sends_nothing_to_a_sealed_pool(kind: str) -> None:
    seen: list[tuple[str, Any]] = []
    progress: list[tuple[int, int]] = []
    c = Mocked(kind, pools_service({"id": "p1", "sealed": True, "resume_from": 10}, seen), "http://a")
    assert c.register_pool(fake_dataset(), progress=lambda d, t: progress.append((d, t))) == "p1"
    assert [path for path, _ in seen] == ["/v1/pools"]
    assert progress == [(10, 10)]
    with pytest.raises(ValueError):
        c.register_pool(fake_dataset(), indices=[])


OPERATIONS = {"soft_labels", "soft_labels_by_hash", "scores", "model_info", "metrics", "metrics_by_replica",
              "register_pool", "pool", "start_job", "job", "wait_job", "create_selection", "selection",
              "sampled_labels", "sampled_labels_by_hash"}


def test_every_operation_of_the_blocking_client_is_on_the_async_one_with_the_same_signature() -> None:
    def public(cls: type) -> set[str]:
        return {name for name in dir(cls) if not name.startswith("_") and callable(getattr(cls, name))}

    blocking = public(SelectorClient) - {"close"}
    assert blocking == OPERATIONS
    assert public(AsyncSelectorClient) - {"aclose"} == OPERATIONS
    for name in sorted(OPERATIONS):
        sync_method, async_method = getattr(SelectorClient, name), getattr(AsyncSelectorClient, name)
        assert inspect.signature(sync_method) == inspect.signature(async_method), name
        assert inspect.iscoroutinefunction(async_method) and not inspect.iscoroutinefunction(sync_method), name
        assert sync_method.__doc__ and sync_method.__doc__ == async_method.__doc__, name
    # help() shows the decoded value, not the generator the call is written as
    assert inspect.signature(SelectorClient.soft_labels).return_annotation.__name__ == "SoftLabels"


def test_a_request_is_a_plain_generator_of_steps() -> None:
    c = SelectorClient(["http://a", "http://b"], api_key="k", backoff_s=0.5, max_backoff_s=2.0)
    request = httpx.Request("GET", "http://a/v1/model")
    op = c._call("GET", "/v1/model")
    step = next(op)
    assert step == Send("GET", "http://a/v1/model", {"headers": {"Authorization": "Bearer k"}})
    assert op.send(unavailable("9")) == Sleep(2.0)  # Retry-After, capped
    assert next(op).url == "http://b/v1/model"
    assert op.send(httpx.ConnectError("down", request=request)).seconds >= 0.5
    assert next(op).url == "http://a/v1/model"
    with pytest.raises(StopIteration) as done:
        op.send(httpx.Response(200, json={"preset": "slm"}))
    assert done.value.value.json() == {"preset": "slm"}


@pytest.mark.parametrize("kind", KINDS)
def test_soft_labels_ask_for_the_wire_format_and_decode_it(kind: str) -> None:
    seen: list[tuple[str | None, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.headers.get("accept"), json.loads(request.content)))
        ids = np.array([[[3, 1], [2, 0]]])
        content = encode_wire(ids, np.full(ids.shape, -0.5), np.full((1, 2), -3.0), np.array([2]), vocab_size=8,
                              metadata={"k": "2", "temperature": "2.0"})
        return httpx.Response(200, content=content, headers={"Content-Type": WIRE_MEDIA_TYPE})

    labels = Mocked(kind, handler, "http://a").soft_labels(np.array([[1, 2, 3]], dtype=np.uint16), k=2,
                                                            temperature=2.0)
    assert seen == [(WIRE_MEDIA_TYPE, {"windows": [[1, 2, 3]], "k": 2, "temperature": 2.0})]
    assert labels.ids.tolist() == [[[3, 1], [2, 0]]] and (labels.k, labels.temperature) == (2, 2.0)


@pytest.mark.parametrize("kind", KINDS)
def test_metrics_by_replica_reads_each_replica_without_failover(kind: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "c":
            raise httpx.ConnectError("down", request=request)
        return httpx.Response(200, text=f"salt_requests_total {ord(request.url.host) - ord('a') + 1}\n")

    assert Mocked(kind, handler, ["http://a", "http://b"]).metrics_by_replica() == [
        {"salt_requests_total": 1.0}, {"salt_requests_total": 2.0}]
    with pytest.raises(httpx.ConnectError):
        Mocked(kind, handler, ["http://a", "http://c"]).metrics_by_replica()


@pytest.mark.parametrize("kind", KINDS)
def test_selections_are_created_and_read_back(kind: str) -> None:
    seen: list[tuple[str, str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path, json.loads(request.content) if request.content else None))
        return httpx.Response(200, json={"id": "s1", "indices": [1, 4]})

    c = Mocked(kind, handler, "http://a")
    assert c.create_selection("p1", "salt_ds", fraction=0.5, band_lo=0.2) == {"id": "s1", "indices": [1, 4]}
    assert c.selection("s1") == {"id": "s1", "indices": [1, 4]}
    assert seen == [
        ("POST", "/v1/selections", {"pool_id": "p1", "method": "salt_ds", "diversity": "none", "seed": 0,
                                    "band_lo": 0.2, "fraction": 0.5}),
        ("GET", "/v1/selections/s1", None),
    ]


def test_concurrent_async_requests_spread_over_replicas() -> None:
    hosts: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        await asyncio.sleep(0)
        return httpx.Response(200, json={"preset": "slm"})

    async def main() -> list[dict[str, Any]]:
        transport = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        async with AsyncSelectorClient(["http://a", "http://b", "http://c"], http_client=transport) as c:
            return await asyncio.gather(*(c.model_info() for _ in range(6)))

    assert asyncio.run(main()) == [{"preset": "slm"}] * 6
    assert sorted(hosts) == ["a", "a", "b", "b", "c", "c"]
