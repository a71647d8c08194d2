"""The database down at start-up (clear error, retries, non-zero exit after the deadline) and while serving
(503 with Retry-After, then recovery without a restart). PostgreSQL is reached through a TCP proxy the test
closes and reopens; the shared server itself is never stopped."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from selector_service.server import wait_for_database
from selector_service.store.database import Database
from selector_service.store.tables import init_schema
from shared.errors import SaltError
from tests.conftest import Postgres, via_port
from tests.selector_service.conftest import assert_error, make_client
from tests.servers import ROOT, free_port, start_server, stop_server
from tests.tcp_proxy import TcpProxy


def _via(proxy: TcpProxy, pg_url: str) -> str:
    return via_port(pg_url, proxy.port)


def test_database_down_at_start_exits_non_zero_after_the_deadline(tiny_checkpoint: Path) -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test"  # nothing listens there
    env = {**os.environ, "SALT_MODEL_PATH": str(tiny_checkpoint), "SALT_DATABASE_URL": url,
           "SALT_DB_CONNECT_DEADLINE_S": "3", "SALT_WARMUP": "false"}
    t0 = time.monotonic()
    # The timeout only guards against a hang: the child's start-up (importing torch) alone takes tens of
    # seconds on a loaded machine, so the child's wall-clock time says nothing about the deadline.
    r = subprocess.run([sys.executable, "-m", "selector_service", "--port", str(free_port())], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    took = time.monotonic() - t0
    assert r.returncode != 0
    assert "error: cache database" in r.stderr and "still unreachable after" in r.stderr
    assert "SALT_DB_CONNECT_DEADLINE_S" in r.stderr
    assert r.stderr.count("unreachable (attempt") >= 2  # it retried before giving up
    assert took >= 3  # it waited out the deadline
    # Giving up right after the deadline is timed on the retry loop itself, with no process start-up in it.
    database = Database(url, init_schema)
    try:
        t0 = time.monotonic()
        with pytest.raises(SaltError, match="still unreachable after"):
            wait_for_database(database, 3)
        took = time.monotonic() - t0
    finally:
        database.dispose()
    assert 3 <= took < 3 + 5 + 2  # the deadline, then at most one more attempt (connect_timeout 5 s)


def test_database_up_within_the_deadline_starts_the_service(tiny_checkpoint: Path, postgres: Postgres,
                                                            pg_url: str) -> None:
    proxy = TcpProxy(postgres.endpoint)  # closed: the database is "down" when the service starts
    threading.Timer(2.0, proxy.open).start()
    try:
        proc, base = start_server(tiny_checkpoint, _via(proxy, pg_url), SALT_DB_CONNECT_DEADLINE_S="30",
                                  SALT_WARMUP="false")
        try:
            assert httpx.get(f"{base}/readyz", timeout=10).status_code == 200
        finally:
            stop_server(proc)
    finally:
        proxy.close()


def test_database_lost_while_serving_is_a_503_then_recovers(tiny_checkpoint: Path, postgres: Postgres,
                                                            pg_url: str, windows: np.ndarray) -> None:
    proxy = TcpProxy(postgres.endpoint).open()
    try:
        with make_client(tiny_checkpoint, _via(proxy, pg_url), retry_after_s=3) as c:
            body = {"windows": windows[:2].tolist()}
            assert c.post("/v1/scores", json=body).status_code == 200
            proxy.close()  # the database goes away under a running service
            for route in ("/v1/scores", "/v1/soft-labels"):
                r = c.post(route, json={"windows": windows[2:4].tolist()})
                assert_error(r, 503, "database_unavailable")
                assert r.headers["retry-after"] == "3"
            r = c.get("/readyz")
            assert_error(r, 503, "database_unavailable")
            assert r.headers["retry-after"] == "3"
            assert c.get("/healthz").status_code == 200
            proxy.open()  # back, and the same process serves again
            deadline = time.monotonic() + 20
            while c.post("/v1/scores", json=body).status_code != 200:
                assert time.monotonic() < deadline, "no recovery"
                time.sleep(0.2)
            assert c.get("/readyz").status_code == 200
            assert c.post("/v1/scores", json={"windows": windows[2:4].tolist()}).status_code == 200
    finally:
        proxy.close()


def test_readyz_answers_the_uniform_error_body_while_the_database_is_down(tiny_checkpoint: Path, postgres: Postgres,
                                                                         pg_url: str) -> None:
    """/readyz with the database away: 503 with Retry-After and the error body of every other answer (the same
    code and message as a /v1 route's 503), documented so in the OpenAPI schema; ready again once it is back."""
    proxy = TcpProxy(postgres.endpoint).open()
    try:
        with make_client(tiny_checkpoint, _via(proxy, pg_url), retry_after_s=4) as c:
            fingerprint = c.get("/v1/model").json()["fingerprint"]
            assert c.get("/readyz").json() == {"status": "ready", "model": fingerprint}
            proxy.close()
            r = c.get("/readyz")
            err = assert_error(r, 503, "database_unavailable")
            assert r.headers["retry-after"] == "4"
            other = assert_error(c.post("/v1/scores", json={"windows": [[1, 2, 3]]}), 503, "database_unavailable")
            assert err["message"] == other["message"]
            documented = c.get("/openapi.json").json()["paths"]["/readyz"]["get"]["responses"]["503"]
            assert documented["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
            proxy.open()
            deadline = time.monotonic() + 20
            while (r := c.get("/readyz")).status_code != 200:
                assert time.monotonic() < deadline, "no recovery"
                time.sleep(0.2)
            assert r.json() == {"status": "ready", "model": fingerprint}
    finally:
        proxy.close()
