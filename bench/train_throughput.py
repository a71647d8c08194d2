"""Training throughput: tokens/s and model FLOP utilisation (MFU) for model presets.

MFU = 6 * params * tokens/s  /  matmul FLOP/s measured on this machine in the same run
(a square fp32 matmul on CPU, bf16 on a GPU), so the figure is a ratio against a baseline
measured here, not against a datasheet (bf16 runs on a CPU can pass 100% of the fp32 peak).

    python bench/train_throughput.py                      # slm and llm presets on the stdlib corpus
    python bench/train_throughput.py --precisions fp32 bf16   # bf16 autocast against fp32, same run
    python bench/train_throughput.py --presets llm-mid --steps 30 --batch-size 32 --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

# bench/trainer.py shares its name with the `trainer` package: keep this folder off the import path.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch  # noqa: E402

from shared.corpus import CorpusSpec  # noqa: E402
from shared.data import PackedDataset  # noqa: E402
from shared.device import PRECISIONS, resolve_device, resolve_precision  # noqa: E402
from shared.model import GPT, GPTConfig  # noqa: E402
from shared.prepare import prepare  # noqa: E402
from trainer.config import TrainConfig  # noqa: E402
from trainer.recipe import train  # noqa: E402
from trainer.recipe.metrics import read_metrics  # noqa: E402


def matmul_flops(device: torch.device, n: int = 2048, seconds: float = 2.0) -> float:
    """Best sustained FLOP/s of an n x n matmul (fp32 on CPU, bf16 on GPU)."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(4):
            a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = max(best, 4 * 2 * n**3 / (time.perf_counter() - t0))
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=["slm", "llm"])
    p.add_argument("--data", type=Path, help="prepared dataset (default: prepare the stdlib corpus in a temp dir)")
    p.add_argument("--steps", type=int, default=15, help="steps per preset; the first 3 are warm-up")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--device", default="auto")
    p.add_argument("--precisions", nargs="+", default=["auto"], choices=PRECISIONS,
                   help="each preset is timed in each; 'vs first' is tokens/s against the first precision")
    args = p.parse_args()
    device = resolve_device(args.device)

    with tempfile.TemporaryDirectory() as tmp:
        if args.data:
            ds = PackedDataset(args.data)
        else:
            ds = prepare(CorpusSpec(max_docs=200), Path(tmp) / "data", seq_len=args.seq_len, vocab_size=8192,
                         report=lambda _m: None)
        peak = matmul_flops(device)
        print(f"device: {device} ({torch.get_num_threads()} threads); torch {torch.__version__}")
        print(f"measured matmul peak: {peak / 1e9:,.1f} GFLOP/s")
        print(f"{'preset':<9} {'precision':<11} {'params':>11} {'tokens/step':>11} {'step ms':>9} {'tokens/s':>10} "
              f"{'MFU':>7} {'vs first':>8}")
        for preset in args.presets:
            first = None
            for precision in args.precisions:
                out = Path(tmp) / f"{preset}-{precision}"
                cfg = TrainConfig.of(data=str(ds.path), out=str(out), preset=preset, steps=args.steps,
                                  batch_size=args.batch_size, warmup_steps=1, eval_every=10**6, eval_windows=1,
                                  ckpt_every=10**6, device=args.device, precision=precision)
                train(cfg, progress=False)
                step_s = [r["step_s"] for r in read_metrics(out) if r["kind"] == "train"][3:]
                med = statistics.median(step_s)
                tokens = args.batch_size * ds.seq_len
                with torch.device("meta"):
                    params = GPT(GPTConfig.from_preset(preset, vocab_size=ds.vocab_size, block_size=ds.seq_len))
                tok_s = tokens / med
                first = first or tok_s
                mfu = params.flops_per_token() * tok_s / peak
                label = f"{precision} ({resolve_precision(precision, device)})" if precision == "auto" else precision
                print(f"{preset:<9} {label:<11} {params.num_params():>11,} {tokens:>11,} {med * 1e3:>9.1f} "
                      f"{tok_s:>10,.0f} {mfu:>7.1%} {tok_s / first:>7.2f}x")


if __name__ == "__main__":
    main()
