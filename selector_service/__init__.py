"""SALT selector service: an SLM behind FastAPI answering soft labels and scores from a cache."""

from selector_service.api.app import create_app
from selector_service.config import Settings

__all__ = ["Settings", "create_app"]
