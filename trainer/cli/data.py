"""``salt prepare`` and ``salt presets``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shared.prepare import PrepareConfig
from trainer.cli.common import setup_logging, user_errors
from trainer.cli.options import default_of, with_config
from trainer.config import TrainConfig


@user_errors
@with_config(PrepareConfig)
def prepare(
    cfg: PrepareConfig,
    out: Annotated[Path, typer.Option(help="Dataset folder to write.")] = Path(default_of(TrainConfig, "data")),
    overwrite: Annotated[bool, typer.Option(help="Replace an existing dataset folder.")] = False,
    verbose: bool = False,
) -> None:
    """Corpus -> tokenizer -> packed dataset folder (manifest + memory-mapped windows)."""
    setup_logging(verbose)
    from shared.prepare import prepare as run

    run(cfg, out, overwrite=overwrite, report=typer.echo)


@user_errors
def presets(
    vocab_size: Annotated[int, typer.Option(help="Vocabulary the counts assume.")] = default_of(
        PrepareConfig, "vocab_size"),
    block_size: Annotated[int, typer.Option(help="Context the counts assume.")] = default_of(PrepareConfig, "seq_len"),
) -> None:
    """List model presets with their parameter counts."""
    from shared.model import PRESETS, preset_summary

    typer.echo(f"{'preset':<10} {'layers':>6} {'heads':>5} {'width':>5} {'params':>12} {'non-emb':>12}")
    for name, total, non_emb in preset_summary(vocab_size, block_size):
        p = PRESETS[name]
        typer.echo(f"{name:<10} {p['n_layer']:>6} {p['n_head']:>5} {p['n_embd']:>5} {total:>12,} {non_emb:>12,}")
