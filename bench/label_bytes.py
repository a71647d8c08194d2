"""Bytes per labelled token of each label setting, as the cache stores them in PostgreSQL.

    .venv/bin/python bench/label_bytes.py --slm runs/cpu-small/slm/<run>/checkpoint --data runs/cpu-small/data
    .venv/bin/python bench/label_bytes.py            # no --slm: a random-init `slm` on a stdlib corpus (worst case)

For the same windows of one SLM, computes the labels of every setting (top-k with k in --topk, sampled
labels with N in --draws) in shared forward passes (the service's ``SLMRunner``), stores each setting's
label rows alone, through the cache's codec and row writer, into a fresh table of its own PostgreSQL
schema (``SALT_BENCH_DATABASE_URL``, default the test database on 127.0.0.1; the schemas are dropped
after), and prints per setting: blob bytes per token, bytes on disk per token
(``pg_total_relation_size`` of the table, its TOAST and its primary-key index, over the tokens), both
per billion tokens, the mean unique ids per position, and each figure against top-32's in the same run.
A ``topk-v1 k=32`` row stores top-32 in the cache's layout 1 (ids in whole bytes), the baseline of
the packed ids.
Only the label rows are counted: a window's scores row (about the same for every setting) is left out.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import tempfile
import uuid
from pathlib import Path

import numpy as np
import sqlalchemy as sa
import zstandard

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from selector_service.cache.slm import Computed, SLMRunner, Work  # noqa: E402
from selector_service.store.cache_rows import Row, labels_params, put_rows, sampled_params  # noqa: E402
from selector_service.store.database import Database  # noqa: E402
from selector_service.store.tables import init_schema  # noqa: E402
from shared.blobs.labels import Packer, _shuffle, checksum  # noqa: E402
from shared.data import PackedDataset  # noqa: E402
from shared.hashing import window_hash  # noqa: E402
from shared.labels import id_dtype  # noqa: E402

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def compute(slm: SLMRunner, windows: np.ndarray, topk: list[int], draws: list[int], chunk: int
            ) -> list[tuple[str, Computed]]:
    """Every setting's labels of each window (temperature 1), ``chunk`` windows per forward pass."""
    out = []
    for i in range(0, len(windows), chunk):
        works = [Work(window_hash(w), w, {(k, 1.0) for k in topk}, {(n, 1.0) for n in draws})
                 for w in windows[i : i + chunk]]
        results, _ = slm.run(works)
        out += [(w.window_hash, r) for w, r in zip(works, results, strict=True)]
    return out


def layout_one(ids: np.ndarray, lp: np.ndarray, tail: np.ndarray, vocab: int) -> bytes:
    """A top-k blob as the cache wrote it before layout 2 (ids in whole bytes), for the baseline row; the
    codec still reads it."""
    dt = id_dtype(vocab)
    L, k = ids.shape
    bits = np.ascontiguousarray(lp, dtype="<f2").view("<u2")
    delta = np.diff(bits, axis=-1, prepend=np.zeros((L, 1), dtype="<u2")).astype("<u2")
    raw = b"".join((struct.pack("<4sBHI", b"SLB1", dt.itemsize, k, L), _shuffle(np.ascontiguousarray(ids, dtype=dt)),
                    _shuffle(delta), _shuffle(np.ascontiguousarray(tail, dtype="<f2"))))
    return zstandard.ZstdCompressor(level=3).compress(raw)


def rows_of(computed: list[tuple[str, Computed]], kind: str, n: int, vocab: int) -> tuple[list[Row], float]:
    """The cache rows of one setting (kind topk, topk-v1 or sample), and its mean unique ids per position."""
    rows, unique = [], []
    packer = Packer(vocab)  # as the store packs them
    for h, c in computed:
        if kind == "topk-v1":
            blob, params = layout_one(*c.labels[(n, 1.0)], vocab), labels_params(n, 1.0)
            unique.append(float(n))
        elif kind == "topk":
            ids, lp, tail = c.labels[(n, 1.0)]
            blob, params = packer.labels(ids, lp, tail), labels_params(n, 1.0)
            unique.append(float(n))
        else:
            ids, counts = c.sampled[(n, 1.0)]
            blob, params = packer.sampled(ids, counts, n), sampled_params(n, 1.0)
            unique.append(float((counts > 0).sum(-1).mean()))
        rows.append(Row(h, params, blob, checksum(blob)))
    return rows, float(np.mean(unique))


def measure(url: str, model_key: str, rows: list[Row], tokens: int) -> tuple[float, float]:
    """(blob bytes, bytes on disk) per token of ``rows`` stored alone in a fresh schema's cache table."""
    schema = f"salt_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    db = Database(f"{url}?options=-csearch_path%3D{schema}", init_schema)
    try:
        db.ensure_ready()
        put_rows(database=db, model=model_key, rows=rows)
        with admin.begin() as conn:
            conn.execute(sa.text(f'ANALYZE "{schema}".salt_cache'))
            blob, disk = conn.execute(sa.text(
                f"SELECT coalesce(sum(octet_length(blob)), 0), pg_total_relation_size('\"{schema}\".salt_cache') "
                f'FROM "{schema}".salt_cache')).one()
        return blob / tokens, disk / tokens
    finally:
        db.dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def random_slm(work: Path, n_windows: int) -> tuple[Path, np.ndarray]:
    """A random-init ``slm`` checkpoint and windows of a stdlib corpus (bench/service.py's build)."""
    from bench.service import build

    return build(work, "slm", 128, 8192, n_windows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--slm", help="SLM checkpoint or model folder (default: a random-init `slm`)")
    p.add_argument("--data", help="its packed dataset (windows from the train split); with --slm")
    p.add_argument("--windows", type=int, default=256)
    p.add_argument("--topk", default="8,16,32")
    p.add_argument("--draws", default="16,32,64")
    p.add_argument("--chunk", type=int, default=16, help="windows per forward pass")
    p.add_argument("--database-url", default=os.environ.get("SALT_BENCH_DATABASE_URL", DEFAULT_URL))
    args = p.parse_args()
    topk, draws = [int(x) for x in args.topk.split(",")], [int(x) for x in args.draws.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        if args.slm:
            ckpt = Path(args.slm)
            windows = np.asarray(PackedDataset(args.data).split("train").windows[: args.windows], dtype=np.int64)
        else:
            ckpt, windows = random_slm(Path(tmp), args.windows)
        slm = SLMRunner(str(ckpt))
        computed = compute(slm, windows, topk, draws, args.chunk)
    tokens = windows.shape[0] * (windows.shape[1] - 1)
    print(f"SLM {ckpt} ({slm.name}, vocabulary {slm.vocab_size}); {windows.shape[0]} windows of "
          f"{windows.shape[1] - 1} tokens = {tokens:,} labelled tokens; PostgreSQL, one table per setting\n")
    results = []
    for kind, ns in (("topk-v1", [32] if 32 in topk else []), ("topk", topk), ("sample", draws)):
        for n in ns:
            rows, unique = rows_of(computed, kind, n, slm.vocab_size)
            results.append((f"{kind} {'N' if kind == 'sample' else 'k'}={n}", unique, *measure(
                args.database_url, slm.model_key, rows, tokens)))
    base = next((r for r in results if r[0] == "topk k=32"), results[0])
    print("| labels | unique ids / position | blob B/token | on disk B/token | vs top-32 on disk "
          "| blob GB / 10^9 tokens | disk GB / 10^9 tokens |")
    print("|---|---|---|---|---|---|---|")
    for name, unique, blob, disk in results:
        print(f"| {name} | {unique:.1f} | {blob:.1f} | {disk:.1f} | {disk / base[3]:.2f}x | {blob:.0f} | {disk:.0f} |")


if __name__ == "__main__":
    main()
