"""Run the service under uvicorn (``salt serve``, ``python -m selector_service``)."""

from __future__ import annotations

import logging

import uvicorn

from selector_service.app import create_app
from selector_service.config import Settings
from selector_service.engine import check_precision
from selector_service.store import DatabaseUnavailable, Store
from shared.checkpoint import read_config
from shared.device import resolve_device

log = logging.getLogger("selector_service")


def preflight(settings: Settings) -> None:
    """Fail fast, with one clear SaltError, on what would stop the app's start-up: a bad checkpoint or
    precision, or a cache database of another schema version. An unreachable database is only logged:
    the service starts and answers 503 until it is back."""
    read_config(settings.model_path)
    check_precision(settings.precision, resolve_device(settings.device, fix="set SALT_DEVICE=cpu"))
    store = Store(settings.database_url)
    try:
        store.ensure_ready()
    except DatabaseUnavailable as e:
        log.warning("cache database unreachable: %s", e)
    finally:
        store.dispose()


def serve(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the app built from the environment's settings (SALT_*) until interrupted."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings()
    preflight(settings)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning", access_log=False)
