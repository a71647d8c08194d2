"""Benchmark of the selector service against an in-process forward of the same checkpoint.

    .venv/bin/python bench/service.py [--preset slm] [--seq-len 128] [--clients 8] [--requests 8] [--batch 8]
    .venv/bin/python bench/service.py --hf llama [--hf-width 256] [--hf-layers 4]   # a Hugging Face SLM

Builds a random-init checkpoint on a small corpus (Python standard library files) -- the project's GPT
preset, or with ``--hf`` a Llama-architecture Hugging Face model folder --, starts the service
(``python -m selector_service``, SQLite cache) and prints, in one run:
  - service windows/s (cold cache, ``--clients`` concurrent clients; the best of as many passes over windows
    not yet cached as the runner has runs) / in-process windows/s (the same labels + scores computed by the
    service's SLM runner, best of two batch sizes and of the main thread and a worker thread); with ``--hf``
    also / the bare ``transformers`` forward (``model(input_ids).logits``, loaded with
    ``AutoModelForCausalLM``) on the same windows;
  - the runner / the bare forward (logits only, the best of every batch size, thread and repeat);
  - cache-hit windows/s (labels asked by hash, as the trainer asks; the best of one pass per window set, each
    asking every window ``HOT_ASKS`` times: asked once, 512 windows take about a tenth of a second) / compute
    windows/s;
  - bytes per token stored (cache blobs) and on the wire (JSON vs binary), and decode time of each;
  - p50/p99 request latency, computing and from the cache.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import sqlalchemy as sa
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from selector_service.cache.slm import SLMRunner, Work  # noqa: E402
from shared import postproc  # noqa: E402
from shared.checkpoint import save_model  # noqa: E402
from shared.client import AsyncSelectorClient, SelectorClient  # noqa: E402
from shared.corpus import CorpusSpec  # noqa: E402
from shared.hashing import window_digests, window_hash  # noqa: E402
from shared.hf import new_hf, save_hf  # noqa: E402
from shared.model import GPT, GPTConfig  # noqa: E402
from shared.prepare import prepare  # noqa: E402
from shared.wire import WIRE_MEDIA_TYPE, decode_wire  # noqa: E402


def build(work: Path, preset: str, seq_len: int, vocab: int, n_windows: int,
          hf: tuple[int, int] | None = None) -> tuple[Path, np.ndarray]:
    """A corpus of stdlib files, its packed dataset and a random-init checkpoint (a Llama folder of
    ``hf = (width, layers)``); returns (ckpt, windows)."""
    corpus = work / "corpus"
    corpus.mkdir()
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    size = 0
    for i, f in enumerate(files):
        text = f.read_text(encoding="utf-8", errors="replace")
        (corpus / f"{i:04d}.txt").write_text(text, encoding="utf-8")
        size += len(text)
        if size > 6 * n_windows * seq_len and i >= 50:
            break
    ds = prepare(CorpusSpec(source=str(corpus)), work / "ds", seq_len=seq_len, vocab_size=vocab, val_fraction=0.05)
    windows = np.asarray(ds.split("train").windows[:n_windows], dtype=np.int64)
    if len(windows) < n_windows:
        raise SystemExit(f"corpus gave only {len(windows)} windows, need {n_windows}")
    tok = ds.tokenizer()
    torch.manual_seed(0)
    if hf is not None:
        save_hf(work / "ckpt", new_hf(llama_config(work / "config", tok.get_vocab_size(), seq_len, *hf),
                                      tok.get_vocab_size()), tok, ds.eot_id)
        return work / "ckpt", windows
    cfg = GPTConfig.from_preset(preset, vocab_size=tok.get_vocab_size(), block_size=seq_len)
    save_model(work / "ckpt", GPT(cfg), tok)
    return work / "ckpt", windows


HOT_ASKS = 5
"""Times each window is asked in a cache-hit pass."""


def llama_config(folder: Path, vocab: int, context: int, width: int, layers: int) -> Path:
    """config.json of a Llama-architecture model (heads of 64, 4 key-value heads, SwiGLU 8/3 wide)."""
    import transformers as tf

    heads = max(1, width // 64)
    cfg = tf.LlamaConfig(vocab_size=vocab, hidden_size=width, intermediate_size=64 * round(width * 8 / 3 / 64),
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=min(4, heads),
                         max_position_embeddings=context, tie_word_embeddings=False)
    cfg.save_pretrained(str(folder))
    return folder / "config.json"


def in_process(ckpt: Path, windows: np.ndarray, batch: int, k: int) -> tuple[float, float]:
    """(windows/s of labels + scores through the SLM runner, windows/s of the bare model forward: for a
    Hugging Face folder ``transformers``' own, loaded with AutoModelForCausalLM)."""
    slm = SLMRunner(str(ckpt))
    slm.warmup()
    chunks = split(windows, batch)
    t0 = time.perf_counter()
    for c in chunks:
        slm.run([Work(window_hash(w), w, {(k, 1.0)}) for w in c])
    full = len(windows) / (time.perf_counter() - t0)
    forward = slm.forward_logits
    if slm.kind == "hf":
        import transformers as tf

        model = tf.AutoModelForCausalLM.from_pretrained(str(ckpt), local_files_only=True).eval()

        def forward(c: np.ndarray) -> torch.Tensor:
            with torch.inference_mode():
                return model(input_ids=torch.from_numpy(c[:, :-1])).logits

        forward(chunks[0])  # warm-up
    t0 = time.perf_counter()
    for c in chunks:
        forward(c)
    bare = len(windows) / (time.perf_counter() - t0)
    return full, bare


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_service(ckpt: Path, db: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "SALT_MODEL_PATH": str(ckpt), "SALT_DATABASE_URL": db}
    proc = subprocess.Popen([sys.executable, "-m", "selector_service", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    with SelectorClient(base, retry_deadline_s=120, backoff_s=0.2) as c:
        c.model_info()
    return proc, base


async def hammer(base: str, requests: list[np.ndarray], clients: int, k: int,
                 by_hash: bool = False) -> tuple[float, list[float], float]:
    """Send every request (binary labels; asked by hash when ``by_hash``) with ``clients`` concurrent clients, each
    client's connection (and check of /v1/model) made first, as once per training run; (seconds, latencies,
    CPU seconds of this process meanwhile)."""
    queue: asyncio.Queue[np.ndarray] = asyncio.Queue()
    for r in requests:
        queue.put_nowait(r)
    latencies: list[float] = []

    async def worker(c: AsyncSelectorClient) -> None:
        async with c:
            while not queue.empty():
                batch = queue.get_nowait()
                t0 = time.perf_counter()
                await (c.soft_labels_by_hash(window_digests(batch), batch, k=k) if by_hash else
                       c.soft_labels(batch, k=k))
                latencies.append(time.perf_counter() - t0)

    cs = [AsyncSelectorClient(base, timeout=300) for _ in range(clients)]
    for c in cs:
        await (c.soft_labels_by_hash(window_digests(requests[0][:1]), requests[0][:1], k=k) if by_hash else
               c.model_info())
    t0, cpu0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker(c) for c in cs))
    return time.perf_counter() - t0, latencies, time.process_time() - cpu0


def split(windows: np.ndarray, batch: int) -> list[np.ndarray]:
    """The windows as requests of ``batch`` windows each."""
    return [windows[i : i + batch] for i in range(0, len(windows), batch)]


def cold_pass(pid: int, base: str, requests: list[np.ndarray], clients: int, k: int) -> tuple:  # type: ignore[type-arg]
    """One pass of requests the cache has not seen: (windows/s, seconds, latencies, client CPU s, service CPU s,
    forward seconds, CPU seconds of each service thread, busiest first)."""
    with SelectorClient(base) as c:
        fwd0 = c.metrics()["salt_forward_seconds_sum"]
    svc0, thr0 = proc_cpu(pid), thread_cpu(pid)
    seconds, latencies, client_cpu = asyncio.run(hammer(base, requests, clients, k))
    service_cpu = proc_cpu(pid) - svc0
    threads = sorted((v - thr0.get(t, 0.0) for t, v in thread_cpu(pid).items()), reverse=True)
    with SelectorClient(base) as c:
        fwd_s = c.metrics()["salt_forward_seconds_sum"] - fwd0
    n = sum(len(r) for r in requests)
    return n / seconds, seconds, latencies, client_cpu, service_cpu, fwd_s, threads


def stat_cpu(stat: Path) -> float:
    """CPU seconds (user + system) of a /proc ``stat`` file: a process's or one of its threads' (Linux)."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float:
    """CPU seconds a process has used so far."""
    return stat_cpu(Path(f"/proc/{pid}/stat"))


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds each thread of a process has used so far, by thread id."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out[task.name] = stat_cpu(task / "stat")
        except FileNotFoundError:  # the thread ended meanwhile
            continue
    return out


def pct(values: list[float], q: float) -> float:
    return 1e3 * float(np.percentile(values, q))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="slm")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--requests", type=int, default=8, help="requests per client")
    p.add_argument("--batch", type=int, default=8, help="windows per request")
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--repeats", type=int, default=2, help="alternating in-process/service runs (best kept)")
    p.add_argument("--hf", choices=["llama"], help="serve a random-init Hugging Face model of this architecture")
    p.add_argument("--hf-width", type=int, default=256)
    p.add_argument("--hf-layers", type=int, default=4)
    args = p.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    n = args.clients * args.requests * args.batch
    sizes = sorted({args.batch, args.clients * args.batch})
    passes = 2 * len(sizes)  # service passes per repeat: as many as the runner's runs
    warm = 1  # and one window set more, for the service's warm-up pass

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        hf = (args.hf_width, args.hf_layers) if args.hf else None
        ckpt, windows = build(work, args.preset, args.seq_len, args.vocab, (passes + warm) * n, hf)
        tokens = (passes + warm) * n * args.seq_len  # stored: every pass's windows
        model = f"Hugging Face {args.hf}, width {args.hf_width}, {args.hf_layers} layers" if hf else args.preset
        print(f"checkpoint: {model}, vocab {args.vocab}, seq_len {args.seq_len}, "
              f"{n} windows ({args.clients} clients x {args.requests} requests x {args.batch} windows), k={args.k}, "
              f"torch threads {torch.get_num_threads()}, CPU post-processing: "
              f"{'C extension' if postproc.available() else 'torch (shared._postproc not built)'}")

        # In-process runs and service passes alternate, one of each in turn, and the best of each is kept, so
        # load from other processes on a shared machine hits both alike. The baseline is the in-process SLM
        # runner's best over per-request and coalesced batch sizes, on the main thread and on a worker thread as
        # in the service (torch's speed differs between the two on some machines). The service gets as many cold
        # passes as the runner gets runs, each on windows it has not seen: a best of 8 runs held against a best
        # of 2 would favour the runner by the noise alone.
        runs: dict[tuple[str, int], tuple[float, float]] = {}
        colds, hots = [], []
        *sets, warm_up = [windows[j * n : (j + 1) * n] for j in range(passes + warm)]
        bares: list[float] = []  # every in-process run's bare forward: the runner is held to the best of them
        for rep in range(args.repeats):
            db = f"sqlite:///{work / f'cache{rep}.sqlite'}"
            proc, base = start_service(ckpt, db)
            try:
                # A service runs for hours: the first batches of each shape (the coalesced batch sizes vary)
                # set up the kernels, so one pass over windows of its own warms it up before the timed ones.
                asyncio.run(hammer(base, split(warm_up, args.batch), args.clients, args.k))
                with ThreadPoolExecutor(1) as worker:
                    for (where, b), w in zip([(t, b) for t in ("main", "worker") for b in sizes], sets, strict=True):
                        run = (in_process(ckpt, sets[0], b, args.k) if where == "main" else
                               worker.submit(in_process, ckpt, sets[0], b, args.k).result())
                        runs[(where, b)] = max(runs.get((where, b), (0.0, 0.0)), run)
                        bares.append(run[1])
                        colds.append(cold_pass(proc.pid, base, split(w, args.batch), args.clients, args.k))
                if rep < args.repeats - 1:
                    continue
                hots = [asyncio.run(hammer(base, split(w, args.batch) * HOT_ASKS, args.clients, args.k, by_hash=True))
                        for w in sets]
                with SelectorClient(base) as c:
                    m = c.metrics()
                    body = {"windows": sets[0][: args.batch].tolist(), "k": args.k}
                    http = c._http
                    js = http.post(f"{base}/v1/soft-labels", json=body).content
                    bn = http.post(f"{base}/v1/soft-labels", json=body, headers={"Accept": WIRE_MEDIA_TYPE}).content
            finally:
                proc.terminate()
                proc.wait(30)
        main_runs = {b: runs[("main", b)] for b in sizes}
        thread_runs = {b: runs[("worker", b)] for b in sizes}
        main_best, thread_best = max(main_runs.values()), max(thread_runs.values())
        inproc = max(main_best, thread_best)[0]
        bare = max(bares)
        cold, cold_s, cold_lat, client_cpu, service_cpu, fwd_s, threads = max(colds, key=lambda c: c[0])
        busy = fwd_s / cold_s
        hot_s, hot_lat, _ = min(hots, key=lambda h: h[0])

        engine = sa.create_engine(db)
        with engine.connect() as conn:
            stored = conn.execute(sa.text(
                "SELECT sum(length(blob)) FROM salt_cache WHERE params LIKE 'labels:%'")).scalar_one()
            stored_scores = conn.execute(sa.text(
                "SELECT sum(length(blob)) FROM salt_cache WHERE params = 'scores'")).scalar_one()
        engine.dispose()

    def decode_json(data: bytes) -> None:
        w = json.loads(data)["windows"]
        torch.tensor([x["ids"] for x in w])
        torch.tensor([x["logprobs"] for x in w])
        torch.tensor([x["tail"] for x in w])

    reps = 20
    t0 = time.perf_counter()
    for _ in range(reps):
        decode_json(js)
    t_json = (time.perf_counter() - t0) / reps
    t0 = time.perf_counter()
    for _ in range(reps):
        decode_wire(bn)
    t_bin = (time.perf_counter() - t0) / reps
    req_tokens = args.batch * args.seq_len

    hot = HOT_ASKS * n / hot_s
    print(f"in-process (SLM runner: forward + labels + scores): {inproc:9.1f} windows/s   "
          f"(main thread {main_best[0]:.1f}, worker thread {thread_best[0]:.1f})")
    print(f"in-process bare forward (logits only; best batch size, thread and repeat): {bare:9.1f} windows/s   "
          f"ratio runner/bare = {inproc / bare:.2f} (goal >= 0.8)")
    if hf:
        print(f"  (the bare forward is transformers' own) ratio service/transformers = {cold / bare:.2f} (goal >= 0.9)")
    print("  in-process by batch size (windows/s, main/worker thread): " + ", ".join(
        f"{b}: {main_runs[b][0]:.1f}/{thread_runs[b][0]:.1f}" for b in sizes))
    print(f"service, cold cache, {args.clients} clients:         {cold:9.1f} windows/s   "
          f"ratio service/in-process = {cold / inproc:.2f} (goal >= 0.9); forward busy {100 * busy:.0f}% "
          f"of the time, {n / fwd_s:.1f} windows/s while busy")
    print("  service runs (windows/s): " + ", ".join(f"{c[0]:.1f}" for c in colds))
    print(f"  CPU during the cold run: service {service_cpu:.1f} s, clients {client_cpu:.1f} s, "
          f"wall {cold_s:.1f} s on {os.cpu_count()} CPUs; the service's busiest threads (the forward thread and "
          f"its OpenMP partner first): {', '.join(f'{t:.2f}' for t in threads[:4])} s")
    print(f"service, all cache hits (by hash):       {hot:9.1f} windows/s   ratio hit/compute = {hot / cold:.1f} "
          f"(goal >= 20; best pass, each window asked {HOT_ASKS} times)")
    print(f"latency compute: p50 {pct(cold_lat, 50):.1f} ms  p99 {pct(cold_lat, 99):.1f} ms   "
          f"cache hits: p50 {pct(hot_lat, 50):.1f} ms  p99 {pct(hot_lat, 99):.1f} ms")
    print(f"stored bytes/token: labels {stored / tokens:.1f} (k={args.k}), scores+embedding "
          f"{stored_scores / tokens:.1f}")
    print(f"wire bytes/token: JSON {len(js) / req_tokens:.1f}, binary {len(bn) / req_tokens:.1f} "
          f"({len(js) / len(bn):.1f}x smaller)")
    print(f"decode {args.batch} windows: JSON {1e3 * t_json:.2f} ms, binary {1e3 * t_bin:.3f} ms "
          f"({t_json / t_bin:.0f}x faster)")
    print(f"metrics: hits {m['salt_cache_hits_total']:.0f}, misses {m['salt_cache_misses_total']:.0f}, "
          f"forward passes {m['salt_forward_passes_total']:.0f}, "
          f"windows computed {m['salt_windows_computed_total']:.0f}")


if __name__ == "__main__":
    main()
