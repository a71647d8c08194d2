"""Benchmark of the store's per-window packing, as it was and as it is.

    .venv/bin/python bench/codec.py [--windows 256] [--seq-len 128] [--k 32] [--vocab 4096] [--repeats 5]

Packs ``--windows`` windows of synthetic top-k labels (sorted log-probs; ids Zipf-distributed, as a trained
SLM's are skewed, and then uniform, as an untrained SLM's look random) and their scores as the service's
store thread does (label blob, ``pack_scores``, checksums), alternating ``--repeats`` times between the
paths, patched in for the run:
  - old: a zstd context made for each blob, ids packed through bit planes (``np.unpackbits``), both id codings
    compressed for every blob and the smaller kept;
  - reused contexts: the zstd contexts of ``shared.blobs.zstd``, one per thread, with the bit planes;
  - 64-bit words: reused contexts and ``shared.blobs.bitpack.pack_bits_numpy``;
  - C packer: reused contexts and the C extension's ``pack_bits`` (when built);
  - now: the C packer and the store's ``Packer`` (both codings tried on every 16th blob of a batch of 64
    windows, the last winner's coding for the others);
checks the first four give the same bytes, and prints microseconds per window (best of the repeats), ratios
to the old path, and the label bytes of ``now`` against the smaller-of-two on every blob.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import zstandard

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from selector_service.store.codec import pack_scores  # noqa: E402
from shared.blobs import bitpack, zstd  # noqa: E402
from shared.blobs import labels as label_blobs  # noqa: E402
from shared.blobs.labels import Packer, checksum, pack_labels  # noqa: E402

Labels = list[tuple[np.ndarray, np.ndarray, np.ndarray]]
PackPath = tuple[Callable[[bytes], bytes], Callable[[np.ndarray, int], bytes], bool]
"""zstd's compress, the id packer, and whether the store's ``Packer`` chooses the coding."""
STORE_BATCH = 64  # windows per forward pass of the service's batcher (8,192 tokens of 128), one Packer each


def pack_bits_planes(values: np.ndarray, bits: int) -> bytes:
    """The first packing: every value's 32 bits unpacked, its low ``bits`` kept, all packed again."""
    a = np.ascontiguousarray(values, dtype="<u4").reshape(-1)
    planes = np.unpackbits(a.view(np.uint8).reshape(-1, 4), axis=1, bitorder="little")[:, :bits]
    return np.packbits(planes.reshape(-1), bitorder="little").tobytes()


def windows(n: int, L: int, k: int, vocab: int, skewed: bool) -> Labels:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        ids = (rng.zipf(1.3, (L, k)) % vocab if skewed else rng.integers(0, vocab, (L, k))).astype(np.int64)
        lp = np.sort(-rng.exponential(3.0, (L, k)), axis=1)[:, ::-1].astype(np.float16)
        out.append((ids, lp, rng.random(L).astype(np.float16)))
    return out


def pack_all(labels: Labels, vocab: int, store: bool) -> tuple[float, list[bytes]]:
    """(seconds, label blobs) of packing every window's labels and scores, with checksums: each blob's smaller
    coding, or with ``store`` as the store packs them (one ``Packer`` per batch)."""
    scores = {"n_tokens": 128.0, "mean_loss": 3.0, "median_loss": 2.5, "top1_acc": 0.4, "mean_entropy": 2.0,
              "salt_ds": 1.5}
    emb = np.zeros(192, np.float16)
    blobs = []
    packer = Packer(vocab)
    t0 = time.perf_counter()
    for i, (ids, lp, tail) in enumerate(labels):
        if store and i % STORE_BATCH == 0:
            packer = Packer(vocab)
        blob = packer.labels(ids, lp, tail) if store else pack_labels(ids, lp, tail, vocab)
        checksum(blob)
        checksum(pack_scores(scores, emb))
        blobs.append(blob)
    return time.perf_counter() - t0, blobs


def fresh(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=zstd.LEVEL).compress(data)


def measure(labels: Labels, vocab: int, repeats: int) -> tuple[dict[str, float], dict[str, list[bytes]]]:
    """Best microseconds per window of each path, and each path's label blobs."""
    reused, default = zstd.compress, label_blobs.pack_bits
    paths: dict[str, PackPath] = {"old": (fresh, pack_bits_planes, False),
                                  "reused contexts": (reused, pack_bits_planes, False),
                                  "64-bit words": (reused, bitpack.pack_bits_numpy, False)}
    if bitpack.native():
        paths["C packer"] = (reused, default, False)
    paths["now"] = (reused, default, True)
    best = dict.fromkeys(paths, float("inf"))
    out = {}
    for _ in range(repeats):
        for name, (compress, pack_bits, store) in paths.items():
            zstd.compress, label_blobs.pack_bits = compress, pack_bits  # looked up at call time by the codec
            try:
                seconds, out[name] = pack_all(labels, vocab, store)
            finally:
                zstd.compress, label_blobs.pack_bits = reused, default
            best[name] = min(best[name], seconds)
    if any(out[name] != out["old"] for name in paths if name != "now"):
        raise SystemExit("the paths gave different bytes")
    return {name: 1e6 * s / len(labels) for name, s in best.items()}, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--windows", type=int, default=256)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    print(f"{args.windows} windows of {args.seq_len} positions, top-{args.k} labels and scores, "
          f"vocabulary {args.vocab}; C packer {'built' if bitpack.native() else 'not built'}")
    for skewed in (True, False):
        per, out = measure(windows(args.windows, args.seq_len, args.k, args.vocab, skewed), args.vocab, args.repeats)
        size = {name: sum(map(len, blobs)) for name, blobs in out.items()}
        print(f"ids {'Zipf-skewed (a trained SLM)' if skewed else 'uniform (an untrained SLM)'}:")
        for name in per:
            print(f"  {name:16s} {per[name]:7.1f} us per window   {per['old'] / per[name]:.2f}x the old path")
        print(f"  label bytes of now / smaller coding on every blob: {size['now'] / size['old']:.4f}")


if __name__ == "__main__":
    main()
