"""Load test of the selector service over loopback: concurrent clients, a fixed request count, hits and misses.

    .venv/bin/python bench/load.py [--clients 32] [--requests 2000] [--rounds 2] [--batch 4] [--hit-fraction 0.5]

Builds a random-init checkpoint (as bench/service.py does), starts the service on 127.0.0.1 with an API
key and a SQLite cache (``trainer.service_process.ServiceProcess``), scores a warm set once, then runs
``--rounds`` identical rounds: ``--clients`` asyncio clients share ``--requests`` requests, alternately
``/v1/scores`` and ``/v1/soft-labels``, each of ``--batch`` windows, all from the warm set (hits) with
probability ``--hit-fraction`` and otherwise new random windows (misses). Prints per round: errors, p50/p99
latency, requests/s, and the service's RSS before the round and its peak during it; exits non-zero on any
error, or when the last round's peak RSS is over the one before by more than ``--rss-slack-mb``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared.client import parse_metrics  # noqa: E402
from trainer.service_process import ServiceProcess  # noqa: E402

KEY = "load-test-key"


def _build():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("bench_service", ROOT / "bench" / "service.py")
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod.build


def _plan(rng: np.random.Generator, n: int, batch: int, hit_fraction: float, warm: np.ndarray,
          vocab: int) -> list[tuple[str, list[list[int]]]]:
    """The round's requests: (route, windows), hits drawn from ``warm``, misses fresh random windows."""
    plan = []
    for i in range(n):
        if rng.random() < hit_fraction:
            windows = warm[rng.integers(0, len(warm), batch)]
        else:
            windows = rng.integers(0, vocab, (batch, warm.shape[1]))
        plan.append(("/v1/scores" if i % 2 == 0 else "/v1/soft-labels", windows.tolist()))
    return plan


async def _round(url: str, plan: list[tuple[str, list[list[int]]]], clients: int, pid: int) -> dict[str, float]:
    proc = psutil.Process(pid)
    rss_before = proc.memory_info().rss
    peak = rss_before
    latencies: list[float] = []
    errors = 0
    queue = list(reversed(plan))
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, proc.memory_info().rss)
            await asyncio.sleep(0.02)

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal errors
        while queue:
            route, windows = queue.pop()
            t0 = time.perf_counter()
            try:
                r = await http.post(route, json={"windows": windows})
                ok = r.status_code == 200
            except httpx.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - t0)
            errors += not ok

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": KEY}, timeout=60, limits=limits) as http:
        sampler = asyncio.create_task(sample())
        t0 = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        wall = time.perf_counter() - t0
        done.set()
        await sampler
    peak = max(peak, proc.memory_info().rss)
    lat = np.asarray(latencies) * 1000
    return {"requests": len(lat), "errors": errors, "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)), "rps": len(lat) / wall, "wall_s": wall,
            "rss_before_mb": rss_before / 2**20, "rss_peak_mb": peak / 2**20}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--requests", type=int, default=2000, help="requests per round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4, help="windows per request")
    ap.add_argument("--hit-fraction", type=float, default=0.5)
    ap.add_argument("--warm", type=int, default=256, help="windows scored before the rounds (the hits)")
    ap.add_argument("--preset", default="slm-tiny")
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--vocab", type=int, default=2048)
    ap.add_argument("--rss-slack-mb", type=float, default=16.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="salt-load-") as tmp:
        work = Path(tmp)
        print(f"building a random-init {args.preset} checkpoint (seq_len {args.seq_len}) ...", flush=True)
        ckpt, warm = _build()(work, args.preset, args.seq_len, args.vocab, args.warm)
        env = {"SALT_API_KEY": KEY, "SALT_DB_CONNECT_DEADLINE_S": "10"}
        with ServiceProcess(ckpt, f"sqlite:///{work / 'cache.sqlite'}", env=env) as svc:
            assert svc.proc is not None
            with httpx.Client(base_url=svc.url, headers={"X-API-Key": KEY}, timeout=120) as http:
                vocab = int(http.get("/v1/model").json()["vocab_size"])
                for i in range(0, len(warm), 64):
                    http.post("/v1/scores", json={"windows": warm[i : i + 64].tolist()}).raise_for_status()
                    http.post("/v1/soft-labels", json={"windows": warm[i : i + 64].tolist()}).raise_for_status()
            print(f"service {svc.url} pid {svc.proc.pid}; {args.clients} clients, {args.requests} requests/round "
                  f"of {args.batch} windows, {args.hit_fraction:.0%} hits, {args.rounds} rounds", flush=True)
            rounds = []
            for n in range(args.rounds):
                # Identical rounds: the same mix drawn with the same seed (misses are new windows each round).
                plan = _plan(np.random.default_rng([args.seed, n]), args.requests, args.batch, args.hit_fraction,
                             warm, vocab)
                r = asyncio.run(_round(svc.url, plan, args.clients, svc.proc.pid))
                rounds.append(r)
                print(f"round {n + 1}: {r['requests']} requests, {r['errors']} errors, p50 {r['p50_ms']:.1f} ms, "
                      f"p99 {r['p99_ms']:.1f} ms, {r['rps']:.0f} req/s ({r['wall_s']:.1f} s); service RSS "
                      f"before {r['rss_before_mb']:.0f} MiB, peak {r['rss_peak_mb']:.0f} MiB", flush=True)
            with httpx.Client(base_url=svc.url, headers={"X-API-Key": KEY}) as http:
                m = parse_metrics(http.get("/metrics").text)
    total_errors = sum(int(r["errors"]) for r in rounds)
    # Growth between the last two identical rounds: the first round also pays for the allocator's warm-up.
    growth = rounds[-1]["rss_peak_mb"] - rounds[-2]["rss_peak_mb"] if len(rounds) > 1 else 0.0
    print(f"cache: {m.get('salt_cache_hits_total', 0):.0f} hits, {m.get('salt_cache_misses_total', 0):.0f} "
          f"misses, {m.get('salt_cache_bad_blobs_total', 0):.0f} bad blobs; "
          f"{m.get('salt_forward_passes_total', 0):.0f} forward passes")
    print(f"errors: {total_errors}; peak RSS growth from round {max(len(rounds) - 1, 1)} to round {len(rounds)}: "
          f"{growth:+.1f} MiB "
          f"(allowed {args.rss_slack_mb:g})")
    return 1 if total_errors or growth > args.rss_slack_mb else 0


if __name__ == "__main__":
    sys.exit(main())
