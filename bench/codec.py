"""Benchmark of the store's per-window packing: a zstd context made per blob against one reused per thread.

    .venv/bin/python bench/codec.py [--windows 256] [--seq-len 128] [--k 32] [--vocab 4096] [--repeats 5]

Packs ``--windows`` windows of synthetic top-k labels (Zipf-distributed ids, sorted log-probs) and their
scores as the service's store thread does (``pack_labels``, ``pack_scores``, checksums), alternating
``--repeats`` times between zstd contexts made for each blob (the old path, patched in for the run) and the
reused ones of ``shared.blobs.zstd``; checks both give the same bytes, and prints microseconds per window
(best of the repeats) and the ratio.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import zstandard

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from selector_service.store.codec import pack_scores  # noqa: E402
from shared.blobs import zstd  # noqa: E402
from shared.blobs.labels import checksum, pack_labels  # noqa: E402


def windows(n: int, L: int, k: int, vocab: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        ids = (rng.zipf(1.3, (L, k)) % vocab).astype(np.int64)
        lp = np.sort(-rng.exponential(3.0, (L, k)), axis=1)[:, ::-1].astype(np.float16)
        out.append((ids, lp, rng.random(L).astype(np.float16)))
    return out


def pack_all(labels: list[tuple[np.ndarray, np.ndarray, np.ndarray]], vocab: int) -> tuple[float, list[bytes]]:
    """(seconds, blobs) of packing every window's labels and scores, with checksums."""
    scores = {"n_tokens": 128.0, "mean_loss": 3.0, "median_loss": 2.5, "top1_acc": 0.4, "mean_entropy": 2.0,
              "salt_ds": 1.5}
    emb = np.zeros(192, np.float16)
    blobs = []
    t0 = time.perf_counter()
    for ids, lp, tail in labels:
        for blob in (pack_labels(ids, lp, tail, vocab), pack_scores(scores, emb)):
            checksum(blob)
            blobs.append(blob)
    return time.perf_counter() - t0, blobs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--windows", type=int, default=256)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    labels = windows(args.windows, args.seq_len, args.k, args.vocab)
    reused = zstd.compress

    def fresh(data: bytes) -> bytes:
        return zstandard.ZstdCompressor(level=zstd.LEVEL).compress(data)

    best = {"fresh": float("inf"), "reused": float("inf")}
    out = {}
    for _ in range(args.repeats):
        for name, compress in (("fresh", fresh), ("reused", reused)):
            zstd.compress = compress  # the codec calls zstd.compress at run time
            try:
                seconds, out[name] = pack_all(labels, args.vocab)
            finally:
                zstd.compress = reused
            best[name] = min(best[name], seconds)
    if out["fresh"] != out["reused"]:
        raise SystemExit("a reused zstd context gave other bytes than a fresh one")
    per = {name: 1e6 * s / args.windows for name, s in best.items()}
    print(f"{args.windows} windows of {args.seq_len} positions, top-{args.k} labels and scores, "
          f"vocabulary {args.vocab}")
    print(f"  a zstd context per blob (old): {per['fresh']:7.1f} us per window")
    print(f"  one context per thread (now):  {per['reused']:7.1f} us per window   "
          f"{per['fresh'] / per['reused']:.2f}x faster")


if __name__ == "__main__":
    main()
