"""Benchmark of cache hits through the client: labels asked by hash against windows uploaded, in one run.

    .venv/bin/python bench/hits.py [--preset slm] [--seq-len 128] [--batch 64] [--clients 4] [--requests 8]

Builds the random-init checkpoint and dataset of ``bench/service.py``, starts the service (SQLite cache),
computes every window once (the compute figure: windows uploaded, cold cache), then, with every window
cached, alternates ``--repeats`` times between the two request paths of the client, best of each kept:
  - windows uploaded: ``soft_labels(windows)`` (token ids as JSON, checked and hashed by the service);
  - by hash: ``soft_labels_by_hash(digests, windows)`` (16 bytes per window, the digests prepare stored);
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

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from service import build, proc_cpu, start_service  # noqa: E402

from shared.client import AsyncSelectorClient  # noqa: E402
from shared.hashing import window_digests  # noqa: E402


async def hammer(base: str, batches: list[tuple[np.ndarray, np.ndarray]], clients: int, k: int,
                 by_hash: bool) -> float:
    """Ask for every batch's labels with ``clients`` concurrent clients; seconds taken."""
    queue: asyncio.Queue[tuple[np.ndarray, np.ndarray]] = asyncio.Queue()
    for b in batches:
        queue.put_nowait(b)

    async def worker(c: AsyncSelectorClient) -> None:
        while not queue.empty():
            windows, digests = queue.get_nowait()
            if by_hash:
                labels = await c.soft_labels_by_hash(digests, windows, k=k)
            else:
                labels = await c.soft_labels(windows, k=k)
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
    p.add_argument("--repeats", type=int, default=3, help="alternating runs of the two paths (best kept)")
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
        def run(by_hash: bool) -> tuple[float, float]:
            """(windows/s, windows per CPU second of the service and this process together)."""
            cpu0 = time.process_time() + proc_cpu(proc.pid)
            seconds = asyncio.run(hammer(base, batches, args.clients, args.k, by_hash=by_hash))
            return n / seconds, n / (time.process_time() + proc_cpu(proc.pid) - cpu0)

        try:
            compute = run(False)[0]
            runs: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
            for _ in range(args.repeats):
                for by_hash in (False, True):
                    runs[by_hash].append(run(by_hash))
        finally:
            proc.terminate()
            proc.wait(30)
    uploaded, hashed = ([r[0] for r in runs[b]] for b in (False, True))
    cpu_old, cpu_new = (float(np.median([r[1] for r in runs[b]])) for b in (False, True))
    old, new = max(uploaded), max(hashed)
    print(f"compute (cold cache, windows uploaded):   {compute:9.1f} windows/s")
    print(f"cache hits, windows uploaded (old path):  {old:9.1f} windows/s   runs: "
          + ", ".join(f"{x:.0f}" for x in uploaded))
    print(f"cache hits, asked by hash:                {new:9.1f} windows/s   runs: "
          + ", ".join(f"{x:.0f}" for x in hashed))
    print(f"ratio by hash / uploaded = {new / old:.1f} best of {args.repeats} (goal >= 3), "
          f"{float(np.median(hashed)) / float(np.median(uploaded)):.1f} median; "
          f"by-hash hits / compute = {new / compute:.1f} (goal >= 20)")
    print(f"windows per CPU second (service + clients, median): uploaded {cpu_old:.0f}, by hash {cpu_new:.0f}, "
          f"ratio {cpu_new / cpu_old:.1f} (less sensitive to other jobs on the machine than windows/s)")


if __name__ == "__main__":
    main()
