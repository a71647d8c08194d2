"""Phase-one cost: KD step time against the baseline step time, and the data-stall fraction.

Measured in one run on one machine: an LLM run in phase one for every step (``kd_full``) against a live
selector service with a cold cache (the SLM computes every label), then baseline runs and the same phase-one
run with a warm cache (every label read from the cache), alternating. Each run's voluntary context switches
per step are printed too: a step whose compute threads sleep and wake shows hundreds, a sound one a few.

    python bench/trainer.py                    # CPU defaults, a few minutes
    python bench/trainer.py --labels sample --draws 16 --steps 40
    python bench/trainer.py --llm llm-mid --slm slm-mid --steps 40 --batch-size 32 --device cuda
"""

from __future__ import annotations

import argparse
import resource
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


def counted(cfg: TrainConfig) -> dict:
    """``train(cfg)``'s summary, with the voluntary context switches of this process during the run (a step's
    compute threads should not sleep: thousands a run mean they do, as when torch ran on a second thread)."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw
    summary = train(cfg, progress=False)
    return {**summary, "switches": resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw - before}


def timed_runs(args: argparse.Namespace, root: Path, common: dict) -> dict[str, list[dict]]:
    """Baseline and warm-cache phase-one runs alternate (``--repeats`` of each) after one cold-cache run, so
    that a drift of the machine's speed falls on both alike. Returns each kind's run summaries."""
    runs: dict[str, list[dict]] = {"baseline": [], "cold": [], "warm": []}
    with ServiceProcess(root / "slm" / "checkpoint", f"sqlite:///{root / 'cache.sqlite'}") as svc:
        kd = dict(common, preset=args.llm, mode="kd_full", service_url=svc.url,
                  kd_labels=args.labels, kd_k=args.k, kd_draws=args.draws)
        runs["cold"].append(counted(TrainConfig.of(out=str(root / "cold0"), **kd)))
        for r in range(args.repeats):
            runs["baseline"].append(counted(TrainConfig.of(out=str(root / f"baseline{r}"), preset=args.llm, **common)))
            runs["warm"].append(counted(TrainConfig.of(out=str(root / f"warm{r}"), **kd)))
    return runs


def report(args: argparse.Namespace, root: Path, ds: PackedDataset, runs: dict[str, list[dict]], skip: int) -> None:
    def median_ms(kind: str) -> float:
        return statistics.median(t for i in range(len(runs[kind])) for t in step_times(root / f"{kind}{i}", skip))

    labels = f"top-{args.k} labels" if args.labels == "topk" else f"{args.draws} sampled labels"
    t_base = median_ms("baseline")
    print(f"dataset: {len(ds.train)} train windows of {ds.seq_len + 1}; LLM {args.llm}, SLM {args.slm}, "
          f"batch {args.batch_size}, {labels}, {args.steps} steps a run (first {skip} left out), "
          f"{args.repeats} baseline and warm runs alternating")
    def switches(kind: str) -> float:
        return statistics.median(r["switches"] for r in runs[kind]) / args.steps

    print(f"{'run':<22} {'median step ms':>15} {'÷ baseline':>11} {'data stall':>11} {'SLM forwards':>13} "
          f"{'switches/step':>14}")
    print(f"{'baseline':<22} {t_base * 1e3:>15.1f} {1.0:>11.2f} {'—':>11} {'—':>13} {switches('baseline'):>14.0f}")
    for name, kind in (("phase one, cold cache", "cold"), ("phase one, warm cache", "warm")):
        last, t = runs[kind][-1], median_ms(kind)
        print(f"{name:<22} {t * 1e3:>15.1f} {t / t_base:>11.2f} {last['data_stall_fraction']:>11.1%} "
              f"{last['service']['slm_forward_passes']:>13.0f} {switches(kind):>14.0f}")
    pairs = [statistics.median(step_times(root / f"warm{i}", skip)) / statistics.median(
        step_times(root / f"baseline{i}", skip)) for i in range(args.repeats)]
    print(f"warm ÷ baseline per repeat: {', '.join(f'{x:.2f}' for x in pairs)}")
    print(f"baseline tokens/s {runs['baseline'][0]['tok_per_s']:,.0f}; cold-cache teacher time "
          f"{runs['cold'][0]['teacher_s']:.1f} s over {args.steps} steps (background thread)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, help="prepared dataset (default: a stdlib subset in a temp dir)")
    p.add_argument("--llm", default="llm")
    p.add_argument("--slm", default="slm")
    p.add_argument("--slm-steps", type=int, default=30, help="SLM training steps (its quality does not matter here)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--labels", choices=("topk", "sample"), default="topk", help="teacher labels of phase one")
    p.add_argument("--k", type=int, default=32, help="top-k ids a position (--labels topk)")
    p.add_argument("--draws", type=int, default=16, help="draws a position (--labels sample)")
    p.add_argument("--repeats", type=int, default=2, help="baseline and warm-cache runs, alternating")
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
        report(args, root, ds, timed_runs(args, root, common), skip)


if __name__ == "__main__":
    main()
