"""Run the service under uvicorn (``salt serve``, ``python -m selector_service``)."""

from __future__ import annotations

import logging
import time

import uvicorn

from selector_service.app import create_app
from selector_service.config import Settings, confined_model_path
from selector_service.engine import check_precision
from selector_service.store import DatabaseUnavailable, Store
from shared.checkpoint import read_config
from shared.device import resolve_device
from shared.errors import SaltError

log = logging.getLogger("selector_service")


def preflight(settings: Settings) -> None:
    """Fail fast, with one clear SaltError, on what would stop the app's start-up: a model path outside
    SALT_MODEL_ROOT, a bad checkpoint or precision, a cache database of another schema version, or one
    still unreachable after SALT_DB_CONNECT_DEADLINE_S of retries (0: only logged; the service starts and
    answers 503 until it is back)."""
    read_config(confined_model_path(settings))
    check_precision(settings.precision, resolve_device(settings.device, fix="set SALT_DEVICE=cpu"))
    store = Store(settings.database_url)
    try:
        wait_for_database(store, settings.db_connect_deadline_s)
    finally:
        store.dispose()


def wait_for_database(store: Store, deadline_s: float) -> None:
    """Open the schema, retrying with backoff (0.5 s doubling to 5 s) until ``deadline_s`` has passed."""
    url = store.engine.url.render_as_string(hide_password=True)
    end = time.monotonic() + deadline_s
    delay, attempt = 0.5, 1
    while True:
        try:
            store.ensure_ready()
            return
        except DatabaseUnavailable as e:
            left = end - time.monotonic()
            if deadline_s == 0:
                log.warning("cache database %s unreachable; starting anyway (503 until it is back): %s", url, e)
                return
            if left <= 0:
                raise SaltError(
                    f"cache database {url} still unreachable after {attempt} attempts in {deadline_s:g} s: {e}",
                    "start the database or fix SALT_DATABASE_URL (SALT_DB_CONNECT_DEADLINE_S sets the wait)",
                ) from e
            log.warning("cache database %s unreachable (attempt %d, retrying for %.0f s more): %s",
                        url, attempt, left, e)
            time.sleep(min(delay, left))
            delay, attempt = min(delay * 2, 5.0), attempt + 1


def serve(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the app built from the environment's settings (SALT_*) until interrupted."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings()
    preflight(settings)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning", access_log=False)
