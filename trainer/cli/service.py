"""``salt serve`` (the selector service, as its own process), ``salt score``, ``salt select`` and ``salt export``."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from shared.errors import SaltError
from shared.selection import DIVERSITIES, SELECTION_METHODS
from trainer.cli.common import user_errors
from trainer.cli.options import choice_metavar, default_of
from trainer.config import ServiceConfig, TrainConfig

HOST = "127.0.0.1"
PORT = 8000
LOCAL_URL = f"http://{HOST}:{PORT}"
"""Where ``salt serve`` listens by default, so where ``salt score`` and ``salt select`` look first."""

ServiceUrl = Annotated[str, typer.Option(help="Selector service URL.")]


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = HOST,
    port: Annotated[int, typer.Option(help="TCP port.")] = PORT,
) -> None:
    """Start the selector service (settings from SALT_* environment variables, e.g. SALT_MODEL_PATH).

    This process becomes ``python -m selector_service``: signals, logs and the exit status are the service's.
    """
    argv = [sys.executable, "-m", "selector_service", "--host", host, "--port", str(port)]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)


@user_errors
def score(
    data: Annotated[Path, typer.Option(help="Prepared dataset folder.")] = Path(default_of(TrainConfig, "data")),
    service_url: Annotated[list[str] | None, typer.Option(
        help="Selector service URL; repeat it to score the pool with each service's model in turn (services "
             "sharing one database, e.g. a learner and a reference for reducible_loss).")] = None,
    name: Annotated[str, typer.Option(help="Pool name (with the dataset, it names the pool).")] = "train",
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Register the dataset's train windows as a pool and score them on the service (resumable)."""
    from shared.client import SelectorClient
    from shared.data import PackedDataset
    from trainer.pool_scoring import score_pool

    ds = PackedDataset(data)
    for url in service_url or [LOCAL_URL]:
        with SelectorClient(url, api_key=ServiceConfig().api_key) as client:
            job = score_pool(client, ds, name=name, progress=progress)
        typer.echo(f"pool {job['pool_id']}: {job['done']} of {job['total']} windows scored by model "
                   f"{job['model_fingerprint']} ({url})")


@user_errors
def select(
    pool: Annotated[str, typer.Option(help="Pool id (printed by `salt score`).")],
    service_url: ServiceUrl = LOCAL_URL,
    method: Annotated[str, typer.Option(help="How the pool's windows are ordered.",
                                        metavar=choice_metavar(SELECTION_METHODS))] = SELECTION_METHODS[0],
    count: Annotated[int | None, typer.Option(help="Budget in windows.")] = None,
    fraction: Annotated[float | None, typer.Option(help="Budget as a fraction of the pool.")] = None,
    diversity: Annotated[str, typer.Option(help="How the budget is taken from that order.",
                                           metavar=choice_metavar(DIVERSITIES))] = DIVERSITIES[0],
    seed: int = 0,
    model: Annotated[list[str] | None, typer.Option(
        help="ROLE=FINGERPRINT of a two-model method, once per role: reducible_loss learner=, reference=; "
             "difference teacher=, reference=; conditional prior=, conditional=.")] = None,
) -> None:
    """Select windows from a scored pool; prints the selection id for `salt train --selection`."""
    from shared.client import SelectorClient
    from trainer.pool_scoring import select as run

    models = parse_models(model or [])
    with SelectorClient(service_url, api_key=ServiceConfig().api_key) as client:
        sel = run(client, pool, method, count=count, fraction=fraction, diversity=diversity, seed=seed,
                  models=models or None)
    typer.echo(f"selection {sel['id']}: {sel['count']} windows ({method}, diversity {diversity})")


def parse_models(pairs: list[str]) -> dict[str, str]:
    """``ROLE=FINGERPRINT`` options as a dict, each role once."""
    out: dict[str, str] = {}
    for pair in pairs:
        role, sep, fingerprint = pair.partition("=")
        if not sep or not role or not fingerprint or role in out:
            raise SaltError(f"--model {pair!r} is not a new ROLE=FINGERPRINT",
                            "pass each role once, e.g. --model learner=<fp> --model reference=<fp>")
        out[role] = fingerprint
    return out


@user_errors
def export(
    out: Annotated[Path, typer.Option(help="Folder to write (manifest.json and safetensors shards).")],
    data: Annotated[Path, typer.Option(help="Prepared dataset folder.")] = Path(default_of(TrainConfig, "data")),
    service_url: ServiceUrl = LOCAL_URL,
    selection: Annotated[str | None, typer.Option(help="Export this selection's windows (default: the split).")]
    = None,
    split: Annotated[str, typer.Option(help="Dataset split.")] = "train",
    kd_k: Annotated[int, typer.Option(help="Ids kept per position.")] = default_of(TrainConfig, "kd_k"),
    kd_temperature: Annotated[float, typer.Option(help="Label temperature.")]
    = default_of(TrainConfig, "kd_temperature"),
    shard_windows: Annotated[int, typer.Option(help="Windows per shard.", min=1)] = 4096,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Write cached soft labels and scores to safetensors shards with a manifest, for `salt train --labels-from`
    or any other framework (resumable; windows not yet cached are computed once)."""
    from tqdm import tqdm

    from shared.client import SelectorClient
    from shared.data import PackedDataset
    from trainer.export import export_labels

    ds = PackedDataset(data)
    with SelectorClient(service_url, api_key=ServiceConfig().api_key) as client, \
            tqdm(desc="export", unit="win", disable=not progress, dynamic_ncols=True) as bar:
        def tick(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        m = export_labels(client, ds, out, selection=selection, split=split, k=kd_k, temperature=kd_temperature,
                          shard_windows=shard_windows, progress=tick)
    typer.echo(f"exported {m['count']} windows ({len(m['shards'])} shards, k={m['k']}) to {out}")
