"""``salt demo``, ``salt experiment``, ``salt ablations`` and ``salt report``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from trainer.cli.common import setup_logging, split_list, user_errors
from trainer.cli.options import with_config
from trainer.experiments.config import DEMO, EXPERIMENT_PRESETS, ExperimentConfig

DEMO_SETTINGS = ("root", "source", "slm_steps", "llm_steps", "slm_preset", "llm_preset", "kd_weight", "kd_fraction",
                 "pool_windows", "max_docs", "device")
"""The demo's options (the rest of its settings are the demo's own)."""


@user_errors
@with_config(ExperimentConfig, defaults=DEMO, only=DEMO_SETTINGS)
def demo(
    cfg: ExperimentConfig,
    modes: Annotated[str, typer.Option(help="Comma-separated LLM runs.")] = ",".join(DEMO.modes),
    seed: Annotated[int, typer.Option(help="The seed of every run.")] = DEMO.seeds[0],
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    verbose: bool = False,
) -> None:
    """SALT end to end: prepare, train the SLM, serve it, train a baseline and a SALT LLM, write a report."""
    setup_logging(verbose)
    from trainer.experiments.demo import run_demo

    run_demo(cfg.with_(modes=split_list(modes), seeds=(seed,)), report=typer.echo, progress=progress)


@user_errors
def experiment(
    preset: Annotated[str, typer.Option(help=f"{' or '.join(EXPERIMENT_PRESETS)} (ignored with --config).")
                      ] = next(iter(EXPERIMENT_PRESETS)),
    config: Annotated[Path | None, typer.Option(help="JSON file of experiment settings (flat names).")] = None,
    root: Annotated[Path | None, typer.Option(help="Folder for everything (overrides the config).")] = None,
    seeds: Annotated[str | None, typer.Option(help="Comma-separated seeds (overrides the config).")] = None,
    modes: Annotated[str | None, typer.Option(help="Comma-separated modes (overrides the config).")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda[:N] (overrides the config).")] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    verbose: bool = False,
) -> None:
    """Baseline vs SALT vs SALT_DS vs KD-all-run over seeds; writes results.json, results.md and plots.

    Every setting of an experiment (``salt experiment --help`` lists the few overrides) can be given in
    the --config JSON file by its flat name: the names of ``salt train``'s options with underscores, plus
    root, name, source, glob, seq_len, vocab_size, slm_preset, slm_steps, llm_preset, llm_steps, modes,
    seeds, kd_fraction, pool_windows, selection_diversity and short_runs.
    """
    setup_logging(verbose)
    from trainer.experiments.config import preset as named
    from trainer.experiments.run import run_experiment

    overrides = {
        "root": str(root) if root else None, "device": device,
        "seeds": tuple(int(s) for s in split_list(seeds)) if seeds else None,
        "modes": split_list(modes) if modes else None,
    }
    cfg = ExperimentConfig.from_file(config, **overrides) if config else named(preset, **overrides)
    run_experiment(cfg, report=typer.echo, progress=progress)


@user_errors
def ablations(
    results: Annotated[list[Path], typer.Argument(help="results.json files of experiments, or their folders.")],
    out: Annotated[Path | None, typer.Option(help="Write the table here (Markdown) as well as to stdout.")] = None,
) -> None:
    """One table over several experiments: settings, final loss, change against the baseline, reach."""
    from trainer.experiments.results import load_results
    from trainer.experiments.tables import ablation_markdown

    text = ablation_markdown([load_results(p) for p in results])
    if out is not None:
        out.write_text(text, encoding="utf-8")
    typer.echo(text, nl=False)


@user_errors
def report(
    runs: Annotated[list[Path] | None, typer.Argument(help="Finished run folders.")] = None,
    out: Annotated[Path, typer.Option(help="Folder for report.md and curves.png.")] = Path("report"),
    baseline: Annotated[str | None, typer.Option(help="Name of the baseline run folder.")] = None,
    teacher: Annotated[Path | None, typer.Option(help="The SLM's run folder (its cost shown apart).")] = None,
    from_results: Annotated[Path | None, typer.Option(
        help="An experiment's folder: rewrite its results.md and plots from its results.json and curves.json "
             "alone (no run folder is read).")] = None,
) -> None:
    """Rebuild report.md and curves.png from saved run metrics, or an experiment's results.md from its files."""
    from shared.errors import SaltError

    if (from_results is None) == (not runs):
        raise SaltError("pass either run folders or --from-results DIR", "see `salt report --help`")
    if from_results is not None:
        from trainer.experiments.run import write_results

        typer.echo(f"wrote {write_results(from_results)}")
        return
    from trainer.experiments.report import write_report

    path = write_report(list(runs or ()), out, baseline=baseline, teacher_run=teacher)
    typer.echo(f"wrote {path}")
