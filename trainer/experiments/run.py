"""``salt experiment``: the paper's comparison from one config, over seeds.

Prepares (or reuses) the data, trains (or reuses) the SLM, starts the service, then trains every mode
for every seed with identical budgets, and writes ``results.json``, ``curves.json``, ``results.md`` and
plots. ``salt demo`` is the one-seed case of the same harness; ``write_results`` rewrites ``results.md``
and the plots of a folder from its ``results.json`` and ``curves.json`` alone.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainer.experiments.config import ExperimentConfig
from trainer.experiments.curves import write_curves
from trainer.experiments.plots import plot_results
from trainer.experiments.results import collect, recompute
from trainer.experiments.stages import run_all
from trainer.experiments.tables import results_markdown

log = logging.getLogger(__name__)


def run_experiment(cfg: ExperimentConfig, *, report: Callable[[str], None] = log.info,
                   progress: bool = True) -> dict[str, Any]:
    """Run (or reuse) every stage and write ``results.json``, ``curves.json``, ``results.md`` and the plots
    into ``cfg.out``."""
    runs = run_all(cfg, report=report, progress=progress)
    results, curves = collect(cfg, runs)
    root = cfg.out
    root.mkdir(parents=True, exist_ok=True)
    (root / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    write_curves(curves, root)
    plot_results(results, curves, root)
    (root / "results.md").write_text(results_markdown(results))
    report(f"results: {root / 'results.md'}")
    return results


def write_results(folder: str | Path, *, plots: bool = True) -> Path:
    """Rewrite ``results.md`` (and the plots) in ``folder`` from its ``results.json`` and ``curves.json``
    alone; returns the path of ``results.md``."""
    out = Path(folder)
    results, curves = recompute(out)
    if plots:
        plot_results(results, curves, out)
    path = out / "results.md"
    path.write_text(results_markdown(results))
    return path
