"""Real selector-service processes for tests: ``python -m selector_service`` on a free loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 180


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(checkpoint: Path, db_url: str, **env_extra: str) -> tuple[subprocess.Popen, str]:
    """Start the service on a free port; returns the process and its base URL once it answers."""
    port = free_port()
    log = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the server)
    env = {**os.environ, "SALT_MODEL_PATH": str(checkpoint), "SALT_DATABASE_URL": db_url, **env_extra}
    proc = subprocess.Popen(
        [sys.executable, "-m", "selector_service", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log,
    )
    base = f"http://127.0.0.1:{port}"
    # Generous: on a loaded 2-core machine importing torch and transformers alone can take a minute.
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"service exited: {log.read().decode()[-2000:]}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"service did not start within {START_TIMEOUT_S} s")


def stop_server(proc: subprocess.Popen) -> None:
    """Terminate the server (SIGTERM, then SIGKILL after 10 s) and reap it."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def sqlite_server(checkpoint: Path, folder: Path) -> Iterator[tuple[subprocess.Popen, str]]:
    """A server of ``checkpoint`` over a SQLite cache in ``folder``, stopped on exit: (process, URL)."""
    proc, url = start_server(checkpoint, f"sqlite:///{folder / 'cache.sqlite'}")
    try:
        yield proc, url
    finally:
        stop_server(proc)
