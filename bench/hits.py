"""Benchmark of cache hits through the client: labels asked by hash against windows uploaded, in one run.

    .venv/bin/python bench/hits.py [--preset slm] [--seq-len 128] [--batch 64] [--clients 4] [--requests 8]
                                   [--repeats 3] [--passes 5]

Builds the random-init checkpoint and dataset of ``bench/service.py``, starts the service (SQLite cache),
computes every window once (the compute figure: windows uploaded, cold cache), then, with every window
cached, alternates ``--repeats`` times between the request paths of the client, best of each kept:
  - windows uploaded: ``soft_labels(windows)`` (token ids as JSON, checked and hashed by the service);
  - by hash, decoded by the service: ``soft_labels_by_hash(digests, windows, blobs=False)`` (16 bytes per
    window, the digests prepare stored; labels answered as arrays);
  - by hash: ``soft_labels_by_hash(digests, windows)`` (the default: the stored blobs answered as they are,
    checked and decoded by the client);
and prints windows/s of each, by hash / uploaded (goal >= 3) and by-hash hits / compute (goal >= 20), and
windows per CPU second of the service and the clients together (what a busy machine does not distort).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from service import build, proc_cpu, start_service  # noqa: E402

from shared.client import AsyncSelectorClient  # noqa: E402
from shared.hashing import window_digests  # noqa: E402

PATHS = {"uploaded": "windows uploaded (old path)", "arrays": "by hash, decoded by the service",
         "blobs": "by hash, decoded by the client"}


async def hammer(base: str, batches: list[tuple[np.ndarray, np.ndarray]], clients: int, k: int, path: str) -> float:
    """Ask for every batch's labels with ``clients`` concurrent clients; seconds taken."""
    queue: asyncio.Queue[tuple[np.ndarray, np.ndarray]] = asyncio.Queue()
    for b in batches:
        queue.put_nowait(b)

    async def worker(c: AsyncSelectorClient) -> None:
        while not queue.empty():
            windows, digests = queue.get_nowait()
            if path == "uploaded":
                labels = await c.soft_labels(windows, k=k)
            else:
                labels = await c.soft_labels_by_hash(digests, windows, k=k, blobs=path == "blobs")
            assert labels.ids.shape[0] == len(windows)

    cs = [AsyncSelectorClient(base, timeout=300) for _ in range(clients)]
    for c in cs:  # connections opened and each replica's /v1/model read before the clock starts
        await c.model_info()
        await c.soft_labels_by_hash(batches[0][1][:1], batches[0][0][:1], k=k)
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in cs))
    seconds = time.perf_counter() - t0
    for c in cs:
        await c.aclose()
    return seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="slm")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--requests", type=int, default=8, help="requests per client")
    p.add_argument("--batch", type=int, default=64, help="windows per request")
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3, help="alternating runs of the paths (best kept)")
    p.add_argument("--passes", type=int, default=5, help="times each cache-hit run asks for every window")
    args = p.parse_args()
    n = args.clients * args.requests * args.batch

    with tempfile.TemporaryDirectory() as tmp:
        ckpt, windows = build(Path(tmp), args.preset, args.seq_len, args.vocab, n)
        digests = window_digests(windows)  # what prepare stores in <split>.hashes
        batches = [(windows[i : i + args.batch], digests[i : i + args.batch]) for i in range(0, n, args.batch)]
        print(f"checkpoint: {args.preset}, vocab {args.vocab}, seq_len {args.seq_len}, {n} windows ({args.clients} "
              f"clients x {args.requests} requests x {args.batch} windows), k={args.k}, "
              f"torch threads {torch.get_num_threads()}")
        proc, base = start_service(ckpt, f"sqlite:///{Path(tmp) / 'cache.sqlite'}")
        def run(path: str, passes: int = args.passes) -> tuple[float, float]:
            """(windows/s, windows per CPU second of the service and this process together)."""
            cpu0 = time.process_time() + proc_cpu(proc.pid)
            seconds = asyncio.run(hammer(base, batches * passes, args.clients, args.k, path))
            return n * passes / seconds, n * passes / (time.process_time() + proc_cpu(proc.pid) - cpu0)

        try:
            compute = run("uploaded", passes=1)[0]
            sizes = {e: answer_bytes(base, batches[0][1], args.k, e) / len(batches[0][1]) for e in ("arrays", "blobs")}
            runs: dict[str, list[tuple[float, float]]] = {p: [] for p in PATHS}
            for _ in range(args.repeats):
                for path in PATHS:
                    runs[path].append(run(path))
        finally:
            proc.terminate()
            proc.wait(30)
    report(runs, compute, args.repeats)
    print(f"answer bytes per window (k={args.k}): decoded arrays {sizes['arrays']:,.0f}, stored blobs "
          f"{sizes['blobs']:,.0f} ({sizes['blobs'] / sizes['arrays']:.2f}x)")


def answer_bytes(base: str, digests: np.ndarray, k: int, encoding: str) -> int:
    """Bytes of one by-hash answer of ``digests`` (all cached) in ``encoding``."""
    r = httpx.post(f"{base}/v1/soft-labels/by-hash", params={"k": k, "encoding": encoding}, content=digests.tobytes(),
                   headers={"Content-Type": "application/octet-stream"}, timeout=60)
    r.raise_for_status()
    return len(r.content)


def report(runs: dict[str, list[tuple[float, float]]], compute: float, repeats: int) -> None:
    """Each path's best windows/s and median windows per CPU second, and their ratios to the old path."""
    best = {p: max(r[0] for r in runs[p]) for p in PATHS}
    median = {p: float(np.median([r[0] for r in runs[p]])) for p in PATHS}
    cpu = {p: float(np.median([r[1] for r in runs[p]])) for p in PATHS}
    print(f"{'compute (cold cache, windows uploaded)':42s} {compute:9.1f} windows/s")
    for p, label in PATHS.items():
        print(f"{'cache hits, ' + label:42s} {best[p]:9.1f} windows/s   runs: "
              + ", ".join(f"{x:.0f}" for x, _ in runs[p]) + f"   per CPU second {cpu[p]:.0f}")
    for p in ("arrays", "blobs"):
        print(f"ratio {PATHS[p]} / uploaded = {best[p] / best['uploaded']:.1f} best of {repeats} (goal >= 3), "
              f"{median[p] / median['uploaded']:.1f} median; per CPU second {cpu[p] / cpu['uploaded']:.1f}")
    print(f"by-hash hits / compute = {best['blobs'] / compute:.1f} (goal >= 20); per CPU second is the service and "
          "the clients together, less sensitive to other jobs on the machine than windows/s")


if __name__ == "__main__":
    main()
