"""Benchmark of the SLM's vocabulary-wide post-processing on the CPU: the C extension against the torch path.

    .venv/bin/python bench/postproc.py [--rows 1024] [--vocab 4096] [--k 32] [--repeats 30]

On the same (rows, vocab) float32 logits (normal, std 3) prints, in milliseconds per call (median of
``--repeats``, the two paths alternating): ``labels_and_scores`` by torch and by the C extension and their
ratio, the extension's ``row_stats`` alone, and torch's top-k alone for scale.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared import postproc
from shared.labels import labels_and_scores


def timed(f: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    f()
    return 1e3 * (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1024, help="positions (windows x tokens)")
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--repeats", type=int, default=30)
    args = p.parse_args()
    if not postproc.available():
        raise SystemExit("shared._postproc is not built: reinstall the package with a C compiler present")
    torch.manual_seed(0)
    L = 128 if args.rows % 128 == 0 else 1
    logits = (torch.randn(args.rows // L, L, args.vocab) * 3).contiguous()  # (B, L, V)
    targets = torch.randint(0, args.vocab, logits.shape[:2])
    hidden = torch.randn(*logits.shape[:2], 192)
    params = [(args.k, 1.0)]
    runs: dict[str, Callable[[], object]] = {
        "labels_and_scores, torch": lambda: labels_and_scores(logits, targets, hidden, params, native=False),
        "labels_and_scores, C extension": lambda: labels_and_scores(logits, targets, hidden, params, native=True),
        "row_stats (the extension's call)": lambda: postproc.row_stats(logits.view(-1, args.vocab), args.k, [1.0]),
        f"torch top-{args.k} alone": lambda: logits.topk(args.k, dim=-1),
    }
    for f in runs.values():  # warm-up
        f()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, f in runs.items():
            times[name].append(timed(f))
    med = {name: statistics.median(t) for name, t in times.items()}
    print(f"{args.rows} positions x vocabulary {args.vocab}, k={args.k}, torch threads {torch.get_num_threads()}, "
          f"median of {args.repeats}")
    for name, ms in med.items():
        print(f"  {name:36s} {ms:8.2f} ms")
    print(f"torch / C extension: {med['labels_and_scores, torch'] / med['labels_and_scores, C extension']:.1f}x")


if __name__ == "__main__":
    main()
