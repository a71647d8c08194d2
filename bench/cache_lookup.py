"""Benchmark of one cache lookup, as a by-hash request makes it: plain SQL against the compiled statement.

    .venv/bin/python bench/cache_lookup.py [--batch 8] [--rows 20000] [--lookups 2000] [--repeats 3]
                                           [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/test]
                                           [--no-analyze]

Fills a cache (SQLite file, and PostgreSQL when ``--postgres`` or ``$SALT_TEST_DATABASE_URL`` names one:
in a schema of its own, dropped after) with ``--rows`` rows of ~9 KB blobs and takes the table's statistics
(not with ``--no-analyze``: a freshly filled table, as before autovacuum's first pass), then times
``get_rows`` for ``--batch`` random hashes (three quarters cached), alternating ``--repeats`` times between
the statement SQLAlchemy compiles (``compiled=True``, the old path) and the plain SQL the drivers get now,
and prints microseconds per lookup (best of the repeats) and the ratio. Both paths must find the same rows;
the bench checks that too.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from selector_service.store.cache_rows import Row, get_rows, put_rows  # noqa: E402
from selector_service.store.database import Database  # noqa: E402
from selector_service.store.tables import init_schema  # noqa: E402
from shared.blobs.labels import checksum  # noqa: E402

PARAMS = "labels:k=32:t=1.0"


def fill(database: Database, rows: int, analyze: bool) -> list[str]:
    """``rows`` cached label rows of random 9 KB blobs, and the table's statistics taken when ``analyze``;
    their hashes."""
    rng = np.random.default_rng(0)
    hashes = [uuid.UUID(bytes=rng.bytes(16)).hex for _ in range(rows)]
    for i in range(0, rows, 2000):
        batch = []
        for h in hashes[i : i + 2000]:
            blob = rng.bytes(9000)
            batch.append(Row(h, PARAMS, blob, checksum(blob)))
        put_rows(database=database, model="m", rows=batch)
    if analyze:  # the statistics a running cache has (PostgreSQL's autovacuum takes them); without them
        with database.transaction() as conn:  # PostgreSQL's plan scans the model's whole key range
            conn.exec_driver_sql("ANALYZE salt_cache")
    return hashes


def time_lookups(database: Database, asks: list[list[str]], compiled: bool) -> tuple[float, int]:
    """(microseconds per lookup, rows found in all)."""
    found = 0
    t0 = time.perf_counter()
    for ask in asks:
        found += len(get_rows(database=database, model="m", params=[PARAMS], hashes=ask, compiled=compiled))
    return 1e6 * (time.perf_counter() - t0) / len(asks), found


def run(name: str, database: Database, args: argparse.Namespace) -> None:
    hashes = fill(database, args.rows, not args.no_analyze)
    rng = np.random.default_rng(1)
    unknown = [uuid.UUID(bytes=rng.bytes(16)).hex for _ in range(args.lookups * args.batch)]
    asks = [[hashes[j] if rng.random() < 0.75 else unknown[i * args.batch + n]
             for n, j in enumerate(rng.integers(0, len(hashes), args.batch))] for i in range(args.lookups)]
    best = {True: float("inf"), False: float("inf")}
    found = {}
    time_lookups(database, asks[:50], True)
    time_lookups(database, asks[:50], False)  # warm-up: connections, the statement caches
    for _ in range(args.repeats):
        for compiled in (True, False):
            us, found[compiled] = time_lookups(database, asks, compiled)
            best[compiled] = min(best[compiled], us)
    if found[True] != found[False]:
        raise SystemExit(f"{name}: the paths found different rows ({found[True]} vs {found[False]})")
    print(f"{name}: {args.batch} hashes per lookup, {args.rows} rows cached, {found[False]} rows found in "
          f"{args.lookups} lookups")
    print(f"  compiled statement (old): {best[True]:8.1f} us per lookup")
    print(f"  plain SQL (now):          {best[False]:8.1f} us per lookup   {best[True] / best[False]:.2f}x faster")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--rows", type=int, default=20000)
    p.add_argument("--lookups", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-analyze", action="store_true", help="leave the filled table without statistics")
    p.add_argument("--postgres", default=os.environ.get("SALT_TEST_DATABASE_URL"),
                   help="a PostgreSQL URL to bench too (default: $SALT_TEST_DATABASE_URL)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        database = Database(f"sqlite:///{Path(tmp) / 'cache.sqlite'}", init_schema)
        try:
            run("SQLite", database, args)
        finally:
            database.dispose()
    if args.postgres:
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine(args.postgres)
        with admin.begin() as conn:
            conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
        url = sa.make_url(args.postgres).update_query_dict({"options": f"-csearch_path={schema}"})
        database = Database(url.render_as_string(hide_password=False), init_schema)
        try:
            run("PostgreSQL", database, args)
        finally:
            database.dispose()
            with admin.begin() as conn:
                conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
            admin.dispose()


if __name__ == "__main__":
    main()
