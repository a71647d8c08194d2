"""Scoring throughput with 1 and 2 selector replicas over one PostgreSQL.

    .venv/bin/python bench/replicas.py [--preset slm] [--seq-len 128] [--windows 1536] [--batch 16] [--clients 4]

Builds a random-init SLM checkpoint on a stdlib corpus (as bench/service.py does), then for 1 and for
2 replicas: a fresh PostgreSQL schema (cold cache), the replicas (``python -m selector_service``, CPU
threads split evenly over the cores), and ``--clients`` threads each sending soft-label requests of
``--batch`` distinct windows (k = ``--k``) through one ``SelectorClient`` given every replica's URL
(round-robin). Prints windows/s computing (cold) and from the cache (second pass), and where the
time went: the replicas' CPU seconds as a share of the machine's cores over the cold pass, the share
of the wall time each replica spent inside SLM forwards (``salt_forward_seconds``), and the rows and
bytes the cache holds per token.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared.client import SelectorClient  # noqa: E402
from shared.service_process import ServiceProcess  # noqa: E402

_spec = importlib.util.spec_from_file_location("bench_service", ROOT / "bench" / "service.py")
assert _spec is not None and _spec.loader is not None
bench_service = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_service)


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pass_over(urls: list[str], chunks: list[np.ndarray], clients: int, k: int) -> float:
    """Seconds to get the labels of every chunk, ``clients`` requests in flight."""
    with SelectorClient(urls, retry_deadline_s=60) as client, ThreadPoolExecutor(clients) as pool:
        t0 = time.perf_counter()
        list(pool.map(lambda c: client.soft_labels(c, k=k), chunks))
        return time.perf_counter() - t0


def run(n: int, ckpt: Path, chunks: list[np.ndarray], args: argparse.Namespace) -> dict[str, float]:
    schema = f"salt_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(args.admin_url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = f"{args.admin_url}?options=-csearch_path%3D{schema}"
    threads = max(1, (os.cpu_count() or 1) // n)
    services = [ServiceProcess(ckpt, url, env={"SALT_TORCH_THREADS": str(threads)}) for _ in range(n)]
    try:
        for s in services:
            s.start()
        urls = [s.url for s in services]
        windows = sum(len(c) for c in chunks)
        cpu0 = [proc_cpu(s.proc.pid) for s in services]  # type: ignore[union-attr]
        cold = pass_over(urls, chunks, args.clients, args.k)
        cpu = [proc_cpu(s.proc.pid) - c for s, c in zip(services, cpu0, strict=True)]  # type: ignore[union-attr]
        warm = pass_over(urls, chunks, args.clients, args.k)
        fwd = 0.0
        with SelectorClient(urls) as c:
            for m in c.metrics_by_replica():
                fwd += m.get("salt_forward_seconds_sum", 0.0)
        with admin.begin() as conn:
            rows, size, disk = conn.execute(sa.text(
                f'SELECT count(*), coalesce(sum(octet_length(blob)), 0), '
                f"pg_total_relation_size('\"{schema}\".salt_cache') FROM \"{schema}\".salt_cache")).one()
        tokens = windows * (chunks[0].shape[1] - 1)
        return {"replicas": n, "threads": threads, "cold_wps": windows / cold, "warm_wps": windows / warm,
                "cold_s": cold, "cpu_s": sum(cpu), "cpu_share": sum(cpu) / (cold * (os.cpu_count() or 1)),
                "forward_busy": fwd / (cold * n), "rows_per_token": rows / tokens,
                "bytes_per_token": size / tokens, "disk_per_token": disk / tokens}
    finally:
        for s in services:
            s.stop()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="slm")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--windows", type=int, default=1536)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--admin-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt, windows = bench_service.build(Path(tmp), args.preset, args.seq_len, args.vocab, args.windows)
        chunks = [windows[i : i + args.batch] for i in range(0, len(windows), args.batch)]
        print(f"{args.preset}, {len(windows)} windows of {args.seq_len} tokens, requests of {args.batch}, "
              f"k={args.k}, {args.clients} clients, {os.cpu_count()} cores, PostgreSQL")
        results = [run(n, ckpt, chunks, args) for n in (1, 2)]
    base = results[0]
    for r in results:
        print(f"{r['replicas']} replica(s) x {r['threads']} thread(s): computing {r['cold_wps']:.0f} windows/s "
              f"({r['cold_wps'] / base['cold_wps']:.2f}x), cached {r['warm_wps']:.0f} windows/s "
              f"({r['warm_wps'] / base['warm_wps']:.2f}x); replicas' CPU {r['cpu_share']:.0%} of the machine, "
              f"each replica in SLM forwards {r['forward_busy']:.0%} of the wall time; "
              f"cache {r['rows_per_token']:.4f} rows, {r['bytes_per_token']:.1f} blob bytes and "
              f"{r['disk_per_token']:.1f} bytes on disk (table, index, TOAST) per token")


if __name__ == "__main__":
    main()
