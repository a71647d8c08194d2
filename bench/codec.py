"""Benchmark of the store's per-window packing, as it was and as it is.

    .venv/bin/python bench/codec.py [--windows 256] [--seq-len 128] [--k 32] [--vocab 4096] [--repeats 5]

Packs ``--windows`` windows of synthetic top-k labels (Zipf-distributed ids, sorted log-probs) and their
scores as the service's store thread does (``pack_labels``, ``pack_scores``, checksums), alternating
``--repeats`` times between three paths, patched in for the run:
  - old: a zstd context made for each blob, ids packed through bit planes (``np.unpackbits``, as before);
  - reused contexts: the zstd contexts of ``shared.blobs.zstd``, one per thread, with the bit planes;
  - now: reused contexts and ``shared.blobs.bitpack.pack_bits`` (64-bit words);
checks all three give the same bytes, and prints microseconds per window (best of the repeats) and ratios.
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
from shared.blobs import labels as label_blobs  # noqa: E402
from shared.blobs import zstd  # noqa: E402
from shared.blobs.labels import checksum, pack_labels  # noqa: E402


def pack_bits_planes(values: np.ndarray, bits: int) -> bytes:
    """The earlier packing: every value's 32 bits unpacked, its low ``bits`` kept, all packed again."""
    a = np.ascontiguousarray(values, dtype="<u4").reshape(-1)
    planes = np.unpackbits(a.view(np.uint8).reshape(-1, 4), axis=1, bitorder="little")[:, :bits]
    return np.packbits(planes.reshape(-1), bitorder="little").tobytes()


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
    reused, words = zstd.compress, label_blobs.pack_bits

    def fresh(data: bytes) -> bytes:
        return zstandard.ZstdCompressor(level=zstd.LEVEL).compress(data)

    paths = {"old": (fresh, pack_bits_planes), "reused contexts": (reused, pack_bits_planes), "now": (reused, words)}
    best = dict.fromkeys(paths, float("inf"))
    out = {}
    for _ in range(args.repeats):
        for name, (compress, pack_bits) in paths.items():
            zstd.compress, label_blobs.pack_bits = compress, pack_bits  # looked up at call time by the codec
            try:
                seconds, out[name] = pack_all(labels, args.vocab)
            finally:
                zstd.compress, label_blobs.pack_bits = reused, words
            best[name] = min(best[name], seconds)
    if not out["old"] == out["reused contexts"] == out["now"]:
        raise SystemExit("the paths gave different bytes")
    per = {name: 1e6 * s / args.windows for name, s in best.items()}
    print(f"{args.windows} windows of {args.seq_len} positions, top-{args.k} labels and scores, "
          f"vocabulary {args.vocab}")
    for name in paths:
        print(f"  {name:16s} {per[name]:7.1f} us per window   {per['old'] / per[name]:.2f}x the old path")


if __name__ == "__main__":
    main()
