"""Scoring throughput with 1 and 2 selector replicas over one PostgreSQL.

    .venv/bin/python bench/replicas.py [--mode job] [--preset slm] [--seq-len 128] [--windows 1536] [--chunk 64]
                                       [--rounds 1]
    .venv/bin/python bench/replicas.py --mode requests [--batch 16] [--clients 4]

Builds a random-init SLM checkpoint on a stdlib corpus (as bench/service.py does), then for 1 and for
2 replicas, each on a fresh PostgreSQL schema (cold cache):

``--mode job`` (the default): one CPU thread per replica (``SALT_TORCH_THREADS=1``); the windows are
registered as a pool through the first replica, the scoring job is started there only, and the time from
the start to the job's ``done`` is measured (the other replica joins at its poll, ``SALT_JOB_POLL_S``, and
leases chunks of ``--chunk`` windows). Prints windows/s and the ratio of 2 replicas to 1 for each of
``--rounds`` back-to-back pairs, and the median ratio. Each replica runs in a session of its own
(``--sessions own``), as separately started services do: Linux's autogroup scheduler gives a busy
machine's CPU out per session, so replicas sharing the bench's session would share one session's share.

``--mode requests``: the replicas (CPU threads split evenly over the cores) and ``--clients`` threads each
sending soft-label requests of
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
from typing import Any

import numpy as np
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared.client import SelectorClient  # noqa: E402
from shared.data import PackedDataset  # noqa: E402
from trainer.service_process import ServiceProcess  # noqa: E402

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


def fresh_schema(admin_url: str) -> tuple[str, str, sa.Engine]:
    """A new PostgreSQL schema: (name, URL whose connections use it, admin engine)."""
    schema = f"salt_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(admin_url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    return schema, f"{admin_url}?options=-csearch_path%3D{schema}", admin


def run_job(n: int, ckpt: Path, ds: PackedDataset, args: argparse.Namespace) -> dict[str, Any]:
    """Seconds for ``n`` replicas of one thread each to score a pool of ``args.windows`` through a job."""
    schema, url, admin = fresh_schema(args.admin_url)
    env = {"SALT_TORCH_THREADS": "1", "SALT_JOB_CHUNK_WINDOWS": str(args.chunk)}
    services = [ServiceProcess(ckpt, url, env=env, new_session=args.sessions == "own") for _ in range(n)]
    try:
        for s in services:
            s.start()
        with SelectorClient(services[0].url, retry_deadline_s=60) as client:
            pool = client.register_pool(ds, name="bench", indices=range(args.windows))
            cpu0 = [proc_cpu(s.proc.pid) for s in services]  # type: ignore[union-attr]
            t0 = time.perf_counter()
            job = client.start_job(pool)
            while (job := client.job(job["id"]))["status"] not in ("done", "failed"):
                time.sleep(0.05)
            seconds = time.perf_counter() - t0
        if job["status"] != "done":
            raise SystemExit(f"the job failed: {job['error']}")
        cpu = [proc_cpu(s.proc.pid) - c for s, c in zip(services, cpu0, strict=True)]  # type: ignore[union-attr]
        with SelectorClient([s.url for s in services]) as c:
            forward = [m.get("salt_forward_seconds_sum", 0.0) for m in c.metrics_by_replica()]
        with admin.connect() as conn:
            per_replica = conn.execute(sa.text(
                f'SELECT done_by, sum(stop - start) FROM "{schema}".salt_job_chunk GROUP BY done_by')).all()
        return {"replicas": n, "seconds": seconds, "wps": args.windows / seconds,
                "cpu_share": sum(cpu) / (seconds * (os.cpu_count() or 1)), "cpu_per_window": sum(cpu) / args.windows,
                "forward_busy": [f / seconds for f in forward],
                "split": sorted(int(w) for _, w in per_replica)}
    finally:
        _tear_down(services, admin, schema)


def _tear_down(services: list[ServiceProcess], admin: sa.Engine, schema: str) -> None:
    """Stop the replicas and drop the run's schema."""
    for s in services:
        s.stop()
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def run_requests(n: int, ckpt: Path, chunks: list[np.ndarray], args: argparse.Namespace) -> dict[str, float]:
    schema, url, admin = fresh_schema(args.admin_url)
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
        _tear_down(services, admin, schema)


def job_rounds(ds: PackedDataset, ckpt: Path, args: argparse.Namespace) -> None:
    """``--rounds`` pairs of (1 replica, 2 replicas) runs, each printed; then the median ratio of the pairs
    (pairs run back to back, so a machine whose load drifts biases neither side)."""
    ratios = []
    for i in range(args.rounds):
        pair = [run_job(n, ckpt, ds, args) for n in (1, 2)]
        for r in pair:
            print(f"round {i + 1}: {r['replicas']} replica(s) x 1 thread: {r['wps']:.1f} windows/s "
                  f"({r['seconds']:.1f} s, {r['wps'] / pair[0]['wps']:.2f}x), windows per replica {r['split']}, "
                  f"replicas' CPU {r['cpu_share']:.0%} of the machine ({r['cpu_per_window'] * 1e3:.1f} ms a "
                  f"window), each replica in SLM forwards {', '.join(f'{b:.0%}' for b in r['forward_busy'])} of "
                  f"the wall time, load average {os.getloadavg()[0]:.1f}", flush=True)
        ratios.append(pair[1]["wps"] / pair[0]["wps"])
    print(f"2 replicas against 1: median {float(np.median(ratios)):.2f}x over {len(ratios)} round(s) "
          f"({', '.join(f'{r:.2f}' for r in ratios)})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=("job", "requests"), default="job")
    p.add_argument("--preset", default="slm")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--windows", type=int, default=1536)
    p.add_argument("--chunk", type=int, default=64, help="windows per leased chunk (job mode)")
    p.add_argument("--rounds", type=int, default=1, help="pairs of 1- and 2-replica runs (job mode)")
    p.add_argument("--sessions", choices=("own", "shared"), default="own",
                   help="job mode: each replica in a session of its own, as separate services (default), or all "
                        "in the bench's session (on a busy Linux machine with autogroup they then share one CPU "
                        "share, whatever their number)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--admin-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt, windows = bench_service.build(Path(tmp), args.preset, args.seq_len, args.vocab, args.windows)
        if args.mode == "job":
            print(f"{args.preset}, a pool of {len(windows)} windows of {args.seq_len} tokens scored by a job in "
                  f"chunks of {args.chunk}, 1 thread per replica, {os.cpu_count()} cores, PostgreSQL, "
                  f"replicas in {args.sessions} sessions")
            job_rounds(PackedDataset(Path(tmp) / "ds"), ckpt, args)
            return
        chunks = [windows[i : i + args.batch] for i in range(0, len(windows), args.batch)]
        print(f"{args.preset}, {len(windows)} windows of {args.seq_len} tokens, requests of {args.batch}, "
              f"k={args.k}, {args.clients} clients, {os.cpu_count()} cores, PostgreSQL")
        results = [run_requests(n, ckpt, chunks, args) for n in (1, 2)]
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
