"""Alembic migrations of the cache database (``versions/``), run by ``selector_service.store.migrate``."""
