"""``salt demo``: SALT end to end on the default corpus, on a laptop CPU.

The one-seed case of ``salt experiment``: prepare the built-in corpus, train the SLM, start the
selector service as a child process (SQLite cache in the demo folder), train the ``baseline``,
``salt`` and ``salt_ds`` LLMs with the same step budget, and write ``report.md`` and ``curves.png``.
Every stage whose output is complete and made with the same settings is reused on the next call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from trainer.experiment import ExperimentConfig, run_all, slm_dir
from trainer.report import write_report

log = logging.getLogger(__name__)

DEMO = ExperimentConfig(root="runs/demo", modes=("baseline", "salt", "salt_ds"), seeds=(0,), eval_every=50,
                        selection_diversity="kmeans")
"""The demo's sizes: about 6.5 minutes on 2 CPU cores with native bf16 (about 14 in fp32). Its salt_ds selection
is spread over k-means clusters: plain top scores pick docstring prose on this corpus (docs/results)."""


def run_demo(cfg: ExperimentConfig = DEMO, *, report: Callable[[str], None] = log.info, progress: bool = True) -> Path:
    """Run the demo; returns the path of ``report.md``."""
    if len(cfg.seeds) != 1:
        raise ValueError("the demo runs one seed; use `salt experiment` for several")
    runs = run_all(cfg, report=report, progress=progress)
    root = Path(cfg.root)
    path = write_report([runs[(m, cfg.seeds[0])] for m in cfg.modes], root, teacher_run=slm_dir(cfg),
                        labels=list(cfg.modes))
    for line in path.read_text().splitlines():
        if line.startswith("|"):
            report(line)
    report(f"report: {path} (curves: {root / 'curves.png'})")
    return path
