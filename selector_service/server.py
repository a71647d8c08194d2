"""Run the service under uvicorn (``salt serve``, ``python -m selector_service``)."""

from __future__ import annotations

import logging
import time

import uvicorn

from selector_service.api.app import create_app
from selector_service.cache.slm import check_precision
from selector_service.config import Settings, confined_model_path
from selector_service.store.database import Database, DatabaseUnavailable
from selector_service.store.tables import init_schema
from shared.device import resolve_device
from shared.errors import SaltError
from shared.lm import check_folder

log = logging.getLogger("selector_service")


def preflight(settings: Settings) -> None:
    """Fail fast, with one clear SaltError, on what would stop the app's start-up: a model path outside
    SALT_MODEL_ROOT, a bad model folder (either kind, or too large for the memory free) or precision, a cache
    database newer than this code (older ones are migrated in place), or one still unreachable after
    SALT_DB_CONNECT_DEADLINE_S of retries (0: only logged; the service starts and answers 503 until it is back)."""
    device = resolve_device(settings.device, fix="set SALT_DEVICE=cpu")
    check_folder(confined_model_path(settings), device=device, dtype=check_precision(settings.precision, device))
    database = Database(settings.database_url, init_schema)
    try:
        wait_for_database(database, settings.db_connect_deadline_s)
    finally:
        database.dispose()


def wait_for_database(database: Database, deadline_s: float) -> None:
    """Open the schema, retrying with backoff (0.5 s doubling to 5 s) until ``deadline_s`` has passed."""
    url = database.display_url
    end = time.monotonic() + deadline_s
    delay, attempt = 0.5, 1
    while True:
        try:
            database.ensure_ready()
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
    logging.getLogger("alembic").setLevel(logging.WARNING)  # migrate.py logs each migration in one line
    settings = Settings()
    preflight(settings)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning", access_log=False)
