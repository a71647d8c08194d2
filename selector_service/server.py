"""Run the service under uvicorn (``salt serve``, ``python -m selector_service``)."""

from __future__ import annotations

import logging

import uvicorn

from selector_service.app import create_app
from selector_service.config import Settings


def serve(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the app built from the environment's settings (SALT_*) until interrupted."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(Settings())
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
