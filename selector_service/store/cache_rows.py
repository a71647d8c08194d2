"""Rows of the label cache (table ``salt_cache``): read by key, inserted once, replaced when damaged."""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select, update

from selector_service.store.database import ROWS_PER_STATEMENT, Database, insert_ignoring_conflicts
from selector_service.store.tables import cache

SCORES_PARAMS = "scores"
"""The ``params`` key part of a window's scores and embedding."""


@dataclass(frozen=True)
class Row:
    window_hash: str
    params: str
    blob: bytes
    checksum: str


def labels_params(k: int, temperature: float) -> str:
    """The ``params`` key part of soft labels."""
    return f"labels:k={k}:t={float(temperature)!r}"


def sampled_params(draws: int, temperature: float) -> str:
    """The ``params`` key part of sampled labels (kind and draws in the key, as k is for top-k)."""
    return f"sample:n={draws}:t={float(temperature)!r}"


def get_rows(*, database: Database, model: str, params: Iterable[str], hashes: Iterable[str],
             compiled: bool = False) -> dict[tuple[str, str], Row]:
    """Rows found for every (hash, params) pair asked, keyed by (hash, params).

    The lookup goes as plain SQL (``_lookup_sql``) to SQLite's and psycopg's drivers; with ``compiled``, or
    for a driver of another parameter style, as a statement SQLAlchemy compiles.
    """
    params, hashes = list(set(params)), list(set(hashes))
    out: dict[tuple[str, str], Row] = {}
    step = ROWS_PER_STATEMENT
    with database.connect() as conn:
        placeholder = None if compiled else _PLACEHOLDERS.get(conn.dialect.paramstyle)
        for i in range(0, len(hashes), step):
            part = hashes[i : i + step]
            if placeholder is None:
                found = conn.execute(select(cache.c.window_hash, cache.c.params, cache.c.blob, cache.c.checksum).where(
                    cache.c.model == model, cache.c.params.in_(params), cache.c.window_hash.in_(part)))
            else:
                found = conn.exec_driver_sql(_lookup_sql(placeholder, len(params), len(part)), (model, *params, *part))
            for h, p, blob, ck in found:
                out[(h, p)] = Row(h, p, bytes(blob), ck)
    return out


_PLACEHOLDERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}
"""Positional placeholders of the drivers' parameter styles (SQLite's and psycopg's)."""


@functools.lru_cache(maxsize=64)
def _lookup_sql(placeholder: str, n_params: int, n_hashes: int) -> str:
    """The lookup as plain SQL with positional parameters: (model, *params, *hashes).

    A cache hit is answered per request of a few windows, and SQLAlchemy's compilation of an expanding IN
    cost more than the query itself (measured: ``bench/cache_lookup.py``); the statement text depends on
    the counts only, so it is built once per count and every value still travels as a bound parameter.
    """
    def marks(n: int) -> str:
        return ", ".join([placeholder] * n)

    c = cache.c
    return (f"SELECT {c.window_hash.name}, {c.params.name}, {c.blob.name}, {c.checksum.name} FROM {cache.name} "
            f"WHERE {c.model.name} = {placeholder} AND {c.params.name} IN ({marks(n_params)}) "
            f"AND {c.window_hash.name} IN ({marks(n_hashes)})")


def put_rows(*, database: Database, model: str, rows: list[Row], replace: Iterable[tuple[str, str]] = ()) -> None:
    """Insert rows, keeping any row already there; rows keyed in ``replace`` overwrite (bad blobs)."""
    if not rows:
        return
    replace = set(replace)
    now = time.time()
    values = [
        {"model": model, "window_hash": r.window_hash, "params": r.params, "blob": r.blob,
         "checksum": r.checksum, "created_at": now}
        for r in rows
    ]
    step = ROWS_PER_STATEMENT
    with database.transaction() as conn:
        for i in range(0, len(values), step):
            conn.execute(insert_ignoring_conflicts(conn, cache), values[i : i + step])
        for r in rows:
            if (r.window_hash, r.params) in replace:
                conn.execute(
                    update(cache)
                    .where(cache.c.model == model, cache.c.window_hash == r.window_hash, cache.c.params == r.params)
                    .values(blob=r.blob, checksum=r.checksum, created_at=now)
                )
