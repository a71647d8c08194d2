"""Phase one's loss alone: forward and backward of CE, of CE and KD computed apart, and of the fused loss.

Times are medians over interleaved repeats, as ratios against CE alone through autograd measured in the same
run; "CE alone fused" is the loss of a plain (baseline or phase-two) step. Peak memory on CUDA.

    python bench/kd_loss.py                                  # B 16, L 128, V 8192, k 32 on CPU
    python bench/kd_loss.py --batch 32 --seq 512 --vocab 32000 --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

# This folder holds a script named like the `trainer` package: keep it off the import path.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch  # noqa: E402

from shared.labels import SoftLabels  # noqa: E402
from trainer.fused_loss import fused_ce, fused_ce_kd, kd_targets  # noqa: E402
from trainer.losses import TopKTailKDLoss, mixed_loss, next_token_ce  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = p.parse_args()
    dev, dtype = torch.device(args.device), getattr(torch, args.dtype)
    torch.manual_seed(0)
    B, L, V, k = args.batch, args.seq, args.vocab, args.k
    top = torch.randn(B, L, V, device=dev).log_softmax(-1).topk(k, dim=-1)
    tail = torch.log1p(-top.values.exp().sum(-1).clamp_max(1 - 1e-6))
    labels = SoftLabels(top.indices, top.values.half().float(), tail.half().float(), torch.full((B,), L), [], k, 1.0)
    logits = torch.randn(B, L, V, device=dev).to(dtype)
    targets = torch.randint(0, V, (B, L), device=dev)

    def ce(s: torch.Tensor) -> torch.Tensor:
        return next_token_ce(s, targets)

    def ce_fused(s: torch.Tensor) -> torch.Tensor:
        return fused_ce(s, targets)[0]

    def apart(s: torch.Tensor) -> torch.Tensor:
        return mixed_loss(next_token_ce(s, targets), TopKTailKDLoss().of(s, labels), 0.5)

    def fused(s: torch.Tensor) -> torch.Tensor:
        return fused_ce_kd(s, targets, kd_targets(labels, dev), 0.5)[0]

    times: dict[str, list[float]] = {"CE alone": [], "CE alone fused": [], "CE + KD apart": [], "CE + KD fused": []}
    peaks: dict[str, float] = {}
    fns: list[Callable[[torch.Tensor], torch.Tensor]] = [ce, ce_fused, apart, fused]
    for _ in range(args.repeats):
        for name, fn in zip(times, fns, strict=True):
            times[name].append(_timed(fn, logits, dev, peaks, name))
    base = statistics.median(times["CE alone"])
    print(f"B {B}, L {L}, V {V}, k {k}, {args.dtype} logits on {dev}; median of {args.repeats} forward+backward")
    print(f"{'loss':<16} {'ms':>9} {'÷ CE':>7} {'peak MiB':>9}")
    for name, ts in times.items():
        t = statistics.median(ts)
        peak = f"{peaks[name]:.0f}" if name in peaks else "—"
        print(f"{name:<16} {t * 1e3:>9.1f} {t / base:>7.2f} {peak:>9}")


def _timed(fn: Callable[[torch.Tensor], torch.Tensor], logits: torch.Tensor, dev: torch.device,
           peaks: dict[str, float], name: str) -> float:
    s = logits.clone().requires_grad_()
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    fn(s).backward()
    if dev.type == "cuda":
        torch.cuda.synchronize()
        peaks[name] = torch.cuda.max_memory_allocated() / 2**20
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
