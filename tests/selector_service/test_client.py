"""Client retries on 503 and connect errors, and raises the service's error body on other 4xx."""

from __future__ import annotations

import httpx
import pytest

from shared.client import SelectorClient, SelectorError, parse_metrics


def test_retries_503_then_succeeds() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        if len(calls) < 3:
            return httpx.Response(503, headers={"Retry-After": "0"},
                                  json={"error": {"code": "database_unavailable", "message": "m", "request_id": "r"}})
        return httpx.Response(200, json={"preset": "slm"})

    http = httpx.Client(transport=httpx.MockTransport(handler))
    c = SelectorClient(["http://a", "http://b"], http_client=http, backoff_s=0.01, api_key="k")
    assert c.model_info() == {"preset": "slm"}
    assert calls == ["http://a/v1/model", "http://b/v1/model", "http://a/v1/model"]  # rotates over replicas


def test_4xx_raises_with_the_error_body_without_retrying() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.headers.get("authorization"))
        return httpx.Response(401, json={"error": {"code": "unauthorized", "message": "bad key", "request_id": "r1"}})

    c = SelectorClient("http://a", http_client=httpx.Client(transport=httpx.MockTransport(handler)), api_key="k")
    with pytest.raises(SelectorError) as e:
        c.scores([[1, 2]])
    assert (e.value.status, e.value.code, e.value.request_id) == (401, "unauthorized", "r1")
    assert calls == ["Bearer k"]


def test_503_past_the_deadline_raises() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"error": {"code": "unavailable", "message": "m", "request_id": "r"}})

    c = SelectorClient("http://a", http_client=httpx.Client(transport=httpx.MockTransport(handler)),
                       retry_deadline_s=0.2, backoff_s=0.01)
    with pytest.raises(SelectorError) as e:
        c.model_info()
    assert e.value.status == 503


def test_parse_metrics() -> None:
    text = '# HELP x y\n# TYPE x counter\nsalt_cache_hits_total 3.0\nsalt_requests_total{route="/a b",method="GET"} 2\n'
    assert parse_metrics(text) == {"salt_cache_hits_total": 3.0, 'salt_requests_total{route="/a b",method="GET"}': 2.0}


def test_requests_spread_over_replicas_and_fail_over() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.host)
        if request.url.host == "b" and len(calls) > 3:
            raise httpx.ConnectError("down", request=request)
        return httpx.Response(200, json={"preset": "slm"})

    c = SelectorClient(["http://a", "http://b"], http_client=httpx.Client(transport=httpx.MockTransport(handler)),
                       backoff_s=0.01)
    for _ in range(3):
        c.model_info()
    assert calls == ["a", "b", "a"]  # round-robin, one replica per request
    c.model_info()  # starts at b, which is down now: the retry goes to a
    assert calls[3:] == ["b", "a"]
