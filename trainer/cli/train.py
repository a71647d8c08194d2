"""``salt train``: its options are ``TrainConfig``'s settings."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from shared.errors import SaltError
from trainer.cli.common import setup_logging, user_errors
from trainer.cli.options import choice_metavar, with_config
from trainer.config import TrainConfig

TRAIN_SPLITS = ("train", "holdout")
"""What ``salt train --split`` trains on: the dataset's train split, or its holdout (a reference model's data)."""


@user_errors
@with_config(TrainConfig)
def train(
    cfg: TrainConfig,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its checkpoint.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Delete a non-empty --out first.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    split: Annotated[str, typer.Option(
        help="Train on the dataset's train split, or on its holdout (`salt prepare --holdout-fraction`): "
             "documents no run on the train split reads, e.g. for reducible_loss's reference model.",
        metavar=choice_metavar(TRAIN_SPLITS))] = TRAIN_SPLITS[0],
    verbose: bool = False,
) -> None:
    """Train a model (an LLM, or the SLM with a smaller preset) on a prepared dataset.

    Modes: baseline (cross-entropy), salt (KD from the service's SLM for n_kd steps), salt_ds (KD on a
    stored selection for n_kd steps), kd_full (KD for the whole run). The API key, if the service
    needs one, is read from SALT_API_KEY.
    """
    setup_logging(verbose)
    from trainer.recipe import train as run

    cfg = on_split(cfg, split)
    summary = run(cfg, resume=resume, overwrite=overwrite, progress=progress)
    typer.echo(
        f"done: val log-perplexity {summary['val_loss']:.4f} nats/token, next-token accuracy "
        f"{summary['val_acc']:.2%}; checkpoint {summary['checkpoint']}"
    )
    if summary["service"]:
        typer.echo(service_line(summary))


def on_split(cfg: TrainConfig, split: str) -> TrainConfig:
    """``cfg`` training on ``split`` of its dataset: the holdout is a dataset folder of its own."""
    if split not in TRAIN_SPLITS:
        raise SaltError(f"unknown split {split!r}", f"use --split {' or '.join(TRAIN_SPLITS)}")
    if split == "train":
        return cfg
    from shared.data import PackedDataset

    return cfg.with_(data=str(PackedDataset(cfg.data).holdout_path()))


def service_line(summary: dict[str, Any]) -> str:
    """One line of what a run asked of the service."""
    svc = summary["service"]
    return (f"service: {svc['requests']} requests, {summary['fallback_batches']} fallback batches, "
            f"cache hits {svc['cache_hits']}, misses {svc['cache_misses']}, SLM forwards {svc['slm_forward_passes']}; "
            f"data stall {summary['data_stall_fraction']:.1%} of step time")
