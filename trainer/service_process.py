"""Run the selector service as a child process (the demo, the experiment harness and the tests use it).

The child is ``python -m selector_service`` on a loopback port, configured through ``SALT_*``
environment variables exactly as ``salt serve`` or the compose service would be.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx

from shared.errors import SaltError


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServiceProcess:
    """A selector service child process; a context manager that stops it on exit.

    Args:
        model_path: SLM checkpoint folder.
        database_url: cache URL (a SQLite file by default in the caller's folder).
        port: TCP port (default: a free one).
        env: further ``SALT_*`` settings.
        start_timeout_s: how long to wait for ``/readyz``.
        new_session: start it in a session of its own (``setsid``), as a separately run service would be: on
            Linux with autogroup scheduling each session gets its own share of a busy machine's CPU, where
            processes of one session share one.
    """

    def __init__(self, model_path: str | Path, database_url: str, *, port: int | None = None,
                 env: dict[str, str] | None = None, start_timeout_s: float = 120.0, new_session: bool = False) -> None:
        self.model_path = Path(model_path)
        self.database_url = database_url
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "SALT_MODEL_PATH": str(self.model_path), "SALT_DATABASE_URL": database_url,
                    **(env or {})}
        self.start_timeout_s = start_timeout_s
        self.new_session = new_session
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (kept as long as the process)

    def start(self) -> ServiceProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "selector_service", "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.env, stdout=subprocess.DEVNULL, stderr=self._log, start_new_session=self.new_session,
        )
        try:
            return self._wait_ready()
        except BaseException:  # a failed start, Ctrl-C or SIGTERM while waiting: leave no service behind
            self.stop()
            raise

    def _wait_ready(self) -> ServiceProcess:
        assert self.proc is not None
        headers = {"Authorization": f"Bearer {self.env['SALT_API_KEY']}"} if self.env.get("SALT_API_KEY") else {}
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SaltError(f"the selector service exited at start-up: {self.log_tail()}",
                                "check the SLM checkpoint and the database URL")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2, headers=headers).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise SaltError(f"the selector service did not become ready within {self.start_timeout_s:.0f} s",
                        "check its log and the database")

    def log_tail(self, chars: int = 2000) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-chars:].strip()

    def stop(self, kill: bool = False) -> None:
        """SIGTERM (SIGKILL with ``kill`` or after 10 s) and reap."""
        if self.proc is None or self.proc.poll() is not None:
            return
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
        self._log.close()
