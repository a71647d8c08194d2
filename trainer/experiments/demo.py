"""``salt demo``: SALT end to end on the default corpus, on a laptop CPU.

The one-seed case of ``salt experiment``: prepare the built-in corpus, train the SLM, start the
selector service as a child process (SQLite cache in the demo folder), train the ``baseline`` and ``salt``
LLMs (and ``salt_ds`` if asked) with the same step budget, and write ``report.md`` and ``curves.png``.
Every stage whose output is complete and made with the same settings is reused on the next call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from shared.config import ConfigError
from trainer.experiments.config import DEMO, ExperimentConfig
from trainer.experiments.report import write_report
from trainer.experiments.stages import run_all, slm_dir

log = logging.getLogger(__name__)


def run_demo(cfg: ExperimentConfig = DEMO, *, report: Callable[[str], None] = log.info, progress: bool = True) -> Path:
    """Run the demo; returns the path of ``report.md``."""
    if len(cfg.seeds) != 1:
        raise ConfigError("the demo runs one seed", "use `salt experiment` for several")
    runs = run_all(cfg, report=report, progress=progress)
    root = Path(cfg.root)
    path = write_report([runs[(m, cfg.seeds[0])] for m in cfg.modes], root, teacher_run=slm_dir(cfg),
                        labels=list(cfg.modes))
    for line in path.read_text().splitlines():
        if line.startswith("|"):
            report(line)
    report(f"report: {path} (curves: {root / 'curves.png'})")
    return path
