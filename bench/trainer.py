"""Phase-one cost: KD step time against the baseline step time, and the data-stall fraction.

Measured in one run on one machine: a baseline LLM run, then the same run in phase one for every step
(``kd_full``) against a live selector service, first with a cold cache (the SLM computes every label)
and again with a warm cache (every label read from the cache).

    python bench/trainer.py                    # CPU defaults, a few minutes
    python bench/trainer.py --llm llm-mid --slm slm-mid --steps 40 --batch-size 32 --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

# This script shares its name with the `trainer` package: keep its own folder off the import path.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from shared.corpus import CorpusSpec  # noqa: E402
from shared.data import PackedDataset  # noqa: E402
from shared.prepare import prepare  # noqa: E402
from trainer.config import TrainConfig  # noqa: E402
from trainer.recipe import train  # noqa: E402
from trainer.recipe.metrics import read_metrics  # noqa: E402
from trainer.service_process import ServiceProcess  # noqa: E402


def step_times(run: Path, skip: int) -> list[float]:
    return [r["step_s"] for r in read_metrics(run) if r["kind"] == "train"][skip:]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, help="prepared dataset (default: a stdlib subset in a temp dir)")
    p.add_argument("--llm", default="llm")
    p.add_argument("--slm", default="slm")
    p.add_argument("--slm-steps", type=int, default=30, help="SLM training steps (its quality does not matter here)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--device", default="auto")
    args = p.parse_args()
    skip = 3

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ds = PackedDataset(args.data) if args.data else prepare(
            CorpusSpec(max_docs=150), root / "data", seq_len=128, vocab_size=8192, report=lambda _m: None)
        common = dict(data=str(ds.path), steps=args.steps, batch_size=args.batch_size, warmup_steps=1,
                      eval_every=10**6, eval_windows=16, ckpt_every=10**6, device=args.device)
        slm = TrainConfig.of(out=str(root / "slm"), preset=args.slm, **{**common, "steps": args.slm_steps})
        train(slm, progress=False)
        base = train(TrainConfig.of(out=str(root / "baseline"), preset=args.llm, **common), progress=False)
        with ServiceProcess(root / "slm" / "checkpoint", f"sqlite:///{root / 'cache.sqlite'}") as svc:
            kd = dict(common, preset=args.llm, mode="kd_full", service_url=svc.url, kd_k=args.k)
            cold = train(TrainConfig.of(out=str(root / "cold"), **kd), progress=False)
            warm = train(TrainConfig.of(out=str(root / "warm"), **kd), progress=False)

        t_base = statistics.median(step_times(root / "baseline", skip))
        print(f"dataset: {len(ds.train)} train windows of {ds.seq_len + 1}; LLM {args.llm}, SLM {args.slm}, "
              f"batch {args.batch_size}, k={args.k}, {args.steps} steps (first {skip} left out)")
        print(f"{'run':<22} {'median step ms':>15} {'÷ baseline':>11} {'data stall':>11} {'SLM forwards':>13}")
        print(f"{'baseline':<22} {t_base * 1e3:>15.1f} {1.0:>11.2f} {'—':>11} {'—':>13}")
        for name, s in (("phase one, cold cache", cold), ("phase one, warm cache", warm)):
            t = statistics.median(step_times(root / ("cold" if "cold" in name else "warm"), skip))
            print(f"{name:<22} {t * 1e3:>15.1f} {t / t_base:>11.2f} {s['data_stall_fraction']:>11.1%} "
                  f"{s['service']['slm_forward_passes']:>13.0f}")
        print(f"baseline tokens/s {base['tok_per_s']:,.0f}; cold-cache teacher time {cold['teacher_s']:.1f} s "
              f"over {args.steps} steps (background thread)")


if __name__ == "__main__":
    main()
