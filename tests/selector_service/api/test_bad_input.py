"""Bad input answers 4xx with the uniform error body and writes nothing; internal errors never leak."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import numpy as np
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from selector_service.api.errors import STATUS_OF_KIND
from selector_service.domain.errors import Kind
from selector_service.store.database import DatabaseUnavailable
from tests.selector_service.conftest import assert_error, make_client


def rows(url: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM salt_cache")).scalar_one()
    finally:
        engine.dispose()


@pytest.fixture
def small(tiny_checkpoint: Path, sqlite_url: str):  # type: ignore[no-untyped-def]
    with make_client(tiny_checkpoint, sqlite_url, max_batch_windows=4, max_body_bytes=20_000) as c:
        yield c, sqlite_url


def test_every_bad_input_is_a_4xx_and_writes_nothing(small, windows: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    c, url = small
    w = windows[0].tolist()
    cases = [
        (c.post("/v1/soft-labels", content=b'{"windows": [[1, 2', headers={"content-type": "application/json"}),
         400, "malformed_json"),
        (c.post("/v1/scores", content=b"not json"), 400, "malformed_json"),
        (c.post("/v1/soft-labels", json={"windows": []}), 422, "empty_batch"),
        (c.post("/v1/soft-labels", json={}), 422, "invalid_request"),
        (c.post("/v1/soft-labels", json={"windows": [w], "texts": ["a b"]}), 422, "invalid_request"),
        (c.post("/v1/soft-labels", json={"windows": [w] * 5}), 413, "batch_too_large"),
        (c.post("/v1/scores", json={"windows": [list(range(64))] * 4, "pad": "x" * 30_000}), 413,
         "payload_too_large"),
        (c.post("/v1/soft-labels", json={"windows": [[1, 2, 100_000]]}), 422, "token_out_of_vocab"),
        (c.post("/v1/soft-labels", json={"windows": [[1, -2, 3]]}), 422, "invalid_request"),
        (c.post("/v1/soft-labels", json={"windows": [[1, 2, "x"]]}), 422, "invalid_request"),
        (c.post("/v1/scores", json={"windows": [[1] * 66]}), 422, "window_too_long"),
        (c.post("/v1/scores", json={"windows": [[1]]}), 422, "window_too_short"),
        (c.post("/v1/scores", json={"texts": ["a"]}), 422, "window_too_short"),
        (c.post("/v1/soft-labels", json={"windows": [w], "k": 0}), 422, "invalid_request"),
        (c.post("/v1/soft-labels", json={"windows": [w], "k": 257}), 422, "invalid_request"),
        (c.post("/v1/soft-labels", json={"windows": [w], "temperature": 0}), 422, "invalid_request"),
        (c.post("/v1/soft-labels", json={"windows": [w], "extra": 1}), 422, "invalid_request"),
        (c.get("/v1/nothing-here"), 404, "not_found"),
        (c.get("/v1/soft-labels"), 405, "method_not_allowed"),
        (c.delete("/v1/model"), 405, "method_not_allowed"),
    ]
    for r, status, code in cases:
        assert_error(r, status, code)
    # A window one longer than the context (64 predicted positions + 1) is fine, 65 is not.
    assert c.post("/v1/scores", json={"windows": [[1] * 65]}).status_code == 200
    assert rows(url) == 2  # only that last good window: its scores and its default labels


def test_a_streamed_body_over_the_limit_is_cut_off(small) -> None:  # type: ignore[no-untyped-def]
    c, _ = small
    chunks = (b'{"windows": [' + b"[1, 2, 3]," * 1000 for _ in range(3))  # no content-length: chunked
    r = c.post("/v1/scores", content=chunks, headers={"content-type": "application/json"})
    assert_error(r, 413, "payload_too_large")


def test_k_over_vocab_is_rejected(tiny_checkpoint: Path, sqlite_url: str) -> None:
    # slm-tiny here has a vocabulary of about 300, so a smaller max_k leaves room to test the bound.
    with make_client(tiny_checkpoint, sqlite_url, max_k=8) as c:
        assert_error(c.post("/v1/soft-labels", json={"windows": [[1, 2, 3]], "k": 9}), 422, "k_out_of_range")


def test_api_key(tiny_checkpoint: Path, sqlite_url: str) -> None:
    with make_client(tiny_checkpoint, sqlite_url, api_key="s3cret") as c:
        body = {"windows": [[1, 2, 3]]}
        assert_error(c.post("/v1/scores", json=body), 401, "unauthorized")
        assert_error(c.post("/v1/scores", json=body, headers={"Authorization": "Bearer wrong"}), 401)
        assert_error(c.get("/v1/model", headers={"X-API-Key": "s3cre"}), 401)
        assert c.post("/v1/scores", json=body, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/v1/model", headers={"X-API-Key": "s3cret"}).status_code == 200
        assert c.get("/healthz").status_code == 200


def test_internal_error_is_a_500_with_request_id_only(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("secret internal detail /etc/passwd")

    monkeypatch.setattr(client.app.state.label_cache.slm, "run", boom)
    r = client.post("/v1/scores", json={"windows": [[5, 6, 7, 8]]})
    err = assert_error(r, 500, "internal_error")
    assert "secret" not in r.text and "Traceback" not in r.text and err["request_id"]
    assert client.get("/healthz").status_code == 200


def test_database_unreachable_is_a_503_and_the_process_stays_up(tiny_checkpoint: Path) -> None:
    url = "postgresql+psycopg://postgres@127.0.0.1:1/test"  # nothing listens on port 1
    with make_client(tiny_checkpoint, url) as c:
        r = c.post("/v1/scores", json={"windows": [[1, 2, 3]]})
        assert_error(r, 503, "database_unavailable")
        assert int(r.headers["retry-after"]) >= 1
        assert c.get("/healthz").status_code == 200
        assert_error(c.get("/readyz"), 503, "database_unavailable")
        assert c.get("/v1/model").status_code == 200


def test_database_lost_after_start(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    def down():  # type: ignore[no-untyped-def]
        raise DatabaseUnavailable("connection refused")

    monkeypatch.setattr(client.app.state.label_cache.database, "connect", down)
    assert_error(client.post("/v1/soft-labels", json={"windows": [[1, 2, 3]]}), 503, "database_unavailable")


def test_every_kind_of_domain_refusal_has_its_status() -> None:
    assert STATUS_OF_KIND == {"invalid": 422, "too_large": 413, "conflict": 409, "not_found": 404}
    assert set(STATUS_OF_KIND) == set(get_args(Kind))
