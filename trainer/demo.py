"""``salt demo``: the default corpus end to end on a laptop CPU.

Prepares the built-in corpus (or reuses it), trains the SLM (or reuses it), then trains the baseline
LLM, and prints their held-out numbers. Every stage is skipped when its output is already complete,
so a second invocation only redoes what is missing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.corpus import CorpusSpec
from shared.data import PackedDataset
from shared.errors import SaltError
from shared.prepare import prepare
from trainer.checkpointing import CKPT_DIR
from trainer.config import TrainConfig
from trainer.train import SUMMARY, train

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo; the defaults finish in minutes on a 2-core CPU."""

    root: str = "runs/demo"
    """Folder for the dataset, the SLM and the LLM runs."""
    source: str = "stdlib"
    """Corpus source (see ``salt prepare``)."""
    seq_len: int = 128
    vocab_size: int = 8192
    slm_preset: str = "slm"
    slm_steps: int = 300
    llm_preset: str = "llm"
    llm_steps: int = 300
    batch_size: int = 16
    seed: int = 0
    device: str = "auto"
    max_docs: int | None = None


def ensure_dataset(cfg: DemoConfig, report: Callable[[str], None]) -> PackedDataset:
    path = Path(cfg.root) / "data"
    if (path / "manifest.json").is_file():
        ds = PackedDataset(path)
        if ds.seq_len == cfg.seq_len and ds.manifest["corpus"]["source"] == cfg.source:
            report(f"reusing dataset {path}")
            return ds
        raise SaltError(f"{path} holds a dataset prepared with other settings", f"delete {path} or pass another --root")
    spec = CorpusSpec(source=cfg.source, max_docs=cfg.max_docs)
    return prepare(spec, path, seq_len=cfg.seq_len, vocab_size=cfg.vocab_size, report=report)


def ensure_run(tcfg: TrainConfig, report: Callable[[str], None], progress: bool) -> dict[str, Any]:
    """Train unless a finished run with the same configuration exists; resume an interrupted one."""
    out = Path(tcfg.out)
    summary = out / SUMMARY
    state_cfg = out / CKPT_DIR / "config.json"
    if summary.is_file():
        done = json.loads(summary.read_text())
        if done.get("steps") == tcfg.steps and done.get("preset") == tcfg.preset:
            report(f"reusing finished run {out}")
            return done
    resume = state_cfg.is_file() and not summary.is_file()  # interrupted, not finished with other settings
    report(f"{'resuming' if resume else 'training'} {tcfg.preset} in {out} ({tcfg.steps} steps)")
    return train(tcfg, resume=resume, overwrite=not resume, progress=progress)


def run_demo(cfg: DemoConfig, *, report: Callable[[str], None] = log.info, progress: bool = True) -> dict[str, Any]:
    """Run the demo; returns the SLM's and the baseline's summaries."""
    root = Path(cfg.root)
    ds = ensure_dataset(cfg, report)
    common = {"data": str(ds.path), "batch_size": cfg.batch_size, "seed": cfg.seed, "device": cfg.device}
    slm = ensure_run(TrainConfig(out=str(root / "slm"), preset=cfg.slm_preset, steps=cfg.slm_steps, **common),
                     report, progress)
    base = ensure_run(TrainConfig(out=str(root / "baseline"), preset=cfg.llm_preset, steps=cfg.llm_steps, **common),
                      report, progress)
    lines = [
        f"{'run':<10} {'preset':<8} {'params':>10} {'steps':>6} {'val log-ppl':>12} {'val acc':>8}",
        *(
            f"{name:<10} {s['preset']:<8} {s['params']:>10,} {s['steps']:>6} "
            f"{s['val_loss']:>12.4f} {s['val_acc']:>8.2%}"
            for name, s in (("slm", slm), ("baseline", base))
        ),
    ]
    for line in lines:
        report(line)
    return {"slm": slm, "baseline": base}
