"""The ``salt`` command line: a thin typed layer over the library functions.

Every subcommand turns a ``SaltError`` into one line on stderr and exit status 1.
"""

from __future__ import annotations

import functools
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from shared.client import SelectorError
from shared.errors import SaltError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Small-model-aided LLM training.")
F = TypeVar("F", bound=Callable[..., Any])


def user_errors(fn: F) -> F:
    """Report ``SaltError`` (and a missing optional dependency) as one line, exit 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SaltError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(1) from None
        except SelectorError as e:
            typer.echo(f"error: selector service: {e}", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S"
    )
    # One line per HTTP request would drown the progress of phase one.
    logging.getLogger("httpx").setLevel(logging.DEBUG if verbose else logging.WARNING)


@app.command()
@user_errors
def prepare(
    out: Annotated[Path, typer.Option(help="Dataset folder to write.")] = Path("data/stdlib"),
    source: Annotated[str, typer.Option(help="'stdlib', a folder, a .jsonl or a .parquet file.")] = "stdlib",
    glob: Annotated[str, typer.Option(help="File pattern inside a folder source.")] = "**/*.txt",
    text_field: Annotated[str, typer.Option(help="JSON field / Parquet column holding the text.")] = "text",
    max_docs: Annotated[int | None, typer.Option(help="Read at most this many documents.")] = None,
    seq_len: Annotated[int, typer.Option(help="Input tokens per window (windows hold seq_len+1).")] = 128,
    vocab_size: Annotated[int, typer.Option(help="Vocabulary of the trained BPE tokenizer.")] = 8192,
    tokenizer: Annotated[Path | None, typer.Option(help="Use this tokenizer.json instead of training one.")] = None,
    val_fraction: Annotated[float, typer.Option(help="Share of documents held out for validation.")] = 0.05,
    dtype: Annotated[str, typer.Option(help="Window dtype: auto, uint16 or uint32.")] = "auto",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing dataset folder.")] = False,
    verbose: bool = False,
) -> None:
    """Corpus -> tokenizer -> packed dataset folder (manifest + memory-mapped windows)."""
    _logging(verbose)
    from shared.corpus import CorpusSpec
    from shared.prepare import prepare as run

    spec = CorpusSpec(source=source, glob=glob, text_field=text_field, max_docs=max_docs)
    run(spec, out, seq_len=seq_len, vocab_size=vocab_size, tokenizer_path=tokenizer,
        val_fraction=val_fraction, dtype=dtype, overwrite=overwrite, report=typer.echo)


@app.command()
@user_errors
def presets(
    vocab_size: int = 8192, block_size: int = 128
) -> None:
    """List model presets with their parameter counts."""
    from shared.model import PRESETS, preset_summary

    typer.echo(f"{'preset':<10} {'layers':>6} {'heads':>5} {'width':>5} {'params':>12} {'non-emb':>12}")
    for name, total, non_emb in preset_summary(vocab_size, block_size):
        p = PRESETS[name]
        typer.echo(f"{name:<10} {p['n_layer']:>6} {p['n_head']:>5} {p['n_embd']:>5} {total:>12,} {non_emb:>12,}")


@app.command()
@user_errors
def train(
    data: Annotated[Path, typer.Option(help="Prepared dataset folder.")] = Path("data/stdlib"),
    out: Annotated[Path, typer.Option(help="Run folder (metrics, checkpoint, summary).")] = Path("runs/baseline"),
    preset: Annotated[str, typer.Option(help="Model preset (see `salt presets`).")] = "llm",
    mode: Annotated[str, typer.Option(help="Training mode.")] = "baseline",
    steps: Annotated[int, typer.Option(help="Optimizer steps.")] = 300,
    batch_size: Annotated[int, typer.Option(help="Windows per micro-batch.")] = 16,
    grad_accum: Annotated[int, typer.Option(help="Micro-batches per optimizer step.")] = 1,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 2e-3,
    min_lr_ratio: Annotated[float, typer.Option(help="Final LR as a fraction of the peak.")] = 0.1,
    warmup_steps: Annotated[int, typer.Option(help="Linear warm-up steps.")] = 30,
    weight_decay: float = 0.1,
    grad_clip: Annotated[float, typer.Option(help="Global gradient-norm clip (0: off).")] = 1.0,
    seed: int = 0,
    eval_every: Annotated[int, typer.Option(help="Evaluate every N steps.")] = 50,
    eval_windows: Annotated[int, typer.Option(help="Validation windows per evaluation.")] = 512,
    ckpt_every: Annotated[int, typer.Option(help="Checkpoint every N steps.")] = 100,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N].")] = "auto",
    precision: Annotated[str, typer.Option(help="auto, fp32 or bf16.")] = "auto",
    block_size: Annotated[int | None, typer.Option(help="Model context (default: the dataset's seq_len).")] = None,
    kd_weight: Annotated[float, typer.Option(help="w in (1 - w) * CE + w * KD during phase one.")] = 0.5,
    n_kd: Annotated[int | None, typer.Option(help="Phase-one steps (default: 20% of the run).")] = None,
    kd_transition: Annotated[str, typer.Option(help="KD weight after n_kd: step or linear.")] = "step",
    kd_transition_steps: Annotated[int, typer.Option(help="Length of the linear fall.")] = 0,
    kd_k: Annotated[int, typer.Option(help="Teacher top-k ids per position.")] = 32,
    kd_temperature: Annotated[float, typer.Option(help="KD softmax temperature.")] = 1.0,
    service_url: Annotated[str | None, typer.Option(help="Selector service URL(s), comma-separated.")] = None,
    selection: Annotated[str | None, typer.Option(help="Stored selection id (mode salt_ds).")] = None,
    fault_policy: Annotated[str, typer.Option(help="Service fault after retries: fail or fallback.")] = "fail",
    retry_deadline_s: Annotated[float, typer.Option(help="Seconds of client retries per request.")] = 30.0,
    prefetch_depth: Annotated[int, typer.Option(help="Phase-one steps fetched ahead.")] = 4,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its checkpoint.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Delete a non-empty --out first.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    verbose: bool = False,
) -> None:
    """Train a model (an LLM, or the SLM with a smaller preset) on a prepared dataset.

    Modes: baseline (cross-entropy), salt (KD from the service's SLM for n_kd steps), salt_ds (KD on a
    stored selection for n_kd steps), kd_full (KD for the whole run). The API key, if the service
    needs one, is read from SALT_API_KEY.
    """
    _logging(verbose)
    from trainer.config import TrainConfig
    from trainer.train import train as run

    try:
        cfg = TrainConfig(
            data=str(data), out=str(out), preset=preset, mode=mode, steps=steps, batch_size=batch_size,
            grad_accum=grad_accum, lr=lr, min_lr_ratio=min_lr_ratio, warmup_steps=warmup_steps,
            weight_decay=weight_decay, grad_clip=grad_clip, seed=seed, eval_every=eval_every,
            eval_windows=eval_windows, ckpt_every=ckpt_every, device=device, precision=precision,
            block_size=block_size, kd_weight=kd_weight, n_kd=n_kd, kd_transition=kd_transition,
            kd_transition_steps=kd_transition_steps, kd_k=kd_k, kd_temperature=kd_temperature,
            service_url=service_url, selection=selection, fault_policy=fault_policy,
            retry_deadline_s=retry_deadline_s, prefetch_depth=prefetch_depth,
        )
    except ValueError as e:
        raise SaltError(str(e)) from e
    summary = run(cfg, resume=resume, overwrite=overwrite, progress=progress)
    typer.echo(
        f"done: val log-perplexity {summary['val_loss']:.4f} nats/token, next-token accuracy "
        f"{summary['val_acc']:.2%}; checkpoint {summary['checkpoint']}"
    )
    if summary["service"]:
        svc = summary["service"]
        typer.echo(
            f"service: {svc['requests']} requests, {summary['fallback_batches']} fallback batches, "
            f"cache hits {svc['cache_hits']}, misses {svc['cache_misses']}, SLM forwards {svc['slm_forward_passes']}; "
            f"data stall {summary['data_stall_fraction']:.1%} of step time"
        )


@app.command()
@user_errors
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
) -> None:
    """Start the selector service (settings from SALT_* environment variables, e.g. SALT_MODEL_PATH)."""
    from selector_service.server import serve as run

    run(host, port)


@app.command()
@user_errors
def demo(
    root: Annotated[Path, typer.Option(help="Folder for the dataset, runs, cache and report.")] = Path("runs/demo"),
    source: Annotated[str, typer.Option(help="Corpus source.")] = "stdlib",
    slm_steps: Annotated[int, typer.Option(help="SLM training steps.")] = 400,
    llm_steps: Annotated[int, typer.Option(help="Steps of every LLM run.")] = 250,
    slm_preset: str = "slm",
    llm_preset: str = "llm",
    kd_weight: Annotated[float, typer.Option(help="KD weight w in phase one.")] = 0.5,
    kd_fraction: Annotated[float, typer.Option(help="Phase one as a fraction of the LLM steps.")] = 0.2,
    pool_windows: Annotated[int, typer.Option(help="Train windows the SLM scores for salt_ds.")] = 3072,
    modes: Annotated[str, typer.Option(help="Comma-separated LLM runs.")] = "baseline,salt,salt_ds",
    max_docs: Annotated[int | None, typer.Option(help="Read at most this many documents.")] = None,
    seed: int = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N].")] = "auto",
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    verbose: bool = False,
) -> None:
    """SALT end to end: prepare, train the SLM, serve it, train baseline/salt/salt_ds LLMs, write a report."""
    _logging(verbose)
    from dataclasses import replace

    from trainer.demo import DEMO, run_demo

    cfg = replace(DEMO, root=str(root), source=source, slm_steps=slm_steps, llm_steps=llm_steps,
                  slm_preset=slm_preset, llm_preset=llm_preset, kd_weight=kd_weight, kd_fraction=kd_fraction,
                  pool_windows=pool_windows, modes=tuple(m.strip() for m in modes.split(",") if m.strip()),
                  max_docs=max_docs, seeds=(seed,), device=device)
    run_demo(cfg, report=typer.echo, progress=progress)


@app.command()
@user_errors
def experiment(
    preset: Annotated[str, typer.Option(help="cpu-small or gpu-mid (ignored with --config).")] = "cpu-small",
    config: Annotated[Path | None, typer.Option(help="JSON file of experiment settings.")] = None,
    root: Annotated[Path | None, typer.Option(help="Folder for everything (overrides the config).")] = None,
    seeds: Annotated[str | None, typer.Option(help="Comma-separated seeds (overrides the config).")] = None,
    modes: Annotated[str | None, typer.Option(help="Comma-separated modes (overrides the config).")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda[:N].")] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    verbose: bool = False,
) -> None:
    """Baseline vs SALT vs SALT_DS vs KD-all-run over seeds; writes results.json, results.md and plots."""
    _logging(verbose)
    from trainer.experiment import ExperimentConfig, run_experiment
    from trainer.experiment import preset as named

    overrides = {
        "root": str(root) if root else None, "device": device,
        "seeds": tuple(int(s) for s in seeds.split(",")) if seeds else None,
        "modes": tuple(m.strip() for m in modes.split(",") if m.strip()) if modes else None,
    }
    cfg = ExperimentConfig.from_file(config, **overrides) if config else named(preset, **overrides)
    run_experiment(cfg, report=typer.echo, progress=progress)


@app.command()
@user_errors
def ablations(
    results: Annotated[list[Path], typer.Argument(help="results.json files of experiments, or their folders.")],
    out: Annotated[Path | None, typer.Option(help="Write the table here (Markdown) as well as to stdout.")] = None,
) -> None:
    """One table over several experiments: settings, final loss, change against the baseline, reach."""
    from trainer.experiment import ablation_markdown, load_results

    text = ablation_markdown([load_results(p) for p in results])
    if out is not None:
        out.write_text(text, encoding="utf-8")
    typer.echo(text, nl=False)


@app.command()
@user_errors
def report(
    runs: Annotated[list[Path], typer.Argument(help="Finished run folders.")],
    out: Annotated[Path, typer.Option(help="Folder for report.md and curves.png.")] = Path("report"),
    baseline: Annotated[str | None, typer.Option(help="Name of the baseline run folder.")] = None,
    teacher: Annotated[Path | None, typer.Option(help="The SLM's run folder (its cost shown apart).")] = None,
) -> None:
    """Rebuild report.md and curves.png from saved run metrics."""
    from trainer.report import write_report

    path = write_report(list(runs), out, baseline=baseline, teacher_run=teacher)
    typer.echo(f"wrote {path}")


@app.command()
@user_errors
def score(
    data: Annotated[Path, typer.Option(help="Prepared dataset folder.")] = Path("data/stdlib"),
    service_url: Annotated[str, typer.Option(help="Selector service URL.")] = "http://127.0.0.1:8000",
    name: Annotated[str, typer.Option(help="Pool name (with the dataset, it names the pool).")] = "train",
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Register the dataset's train windows as a pool and score them on the service (resumable)."""
    import os

    from shared.client import SelectorClient
    from shared.data import PackedDataset
    from trainer.scoring import score_pool

    ds = PackedDataset(data)
    with SelectorClient(service_url, api_key=os.environ.get("SALT_API_KEY") or None) as client:
        job = score_pool(client, ds, name=name, progress=progress)
    typer.echo(f"pool {job['pool_id']}: {job['done']} of {job['total']} windows scored")


@app.command("select")
@user_errors
def select_cmd(
    pool: Annotated[str, typer.Option(help="Pool id (printed by `salt score`).")],
    service_url: Annotated[str, typer.Option(help="Selector service URL.")] = "http://127.0.0.1:8000",
    method: Annotated[str, typer.Option(help="salt_ds, loss_band or random.")] = "salt_ds",
    count: Annotated[int | None, typer.Option(help="Budget in windows.")] = None,
    fraction: Annotated[float | None, typer.Option(help="Budget as a fraction of the pool.")] = None,
    diversity: Annotated[str, typer.Option(help="none, kmeans or dedup.")] = "none",
    seed: int = 0,
) -> None:
    """Select windows from a scored pool; prints the selection id for `salt train --selection`."""
    import os

    from shared.client import SelectorClient
    from trainer.scoring import select

    with SelectorClient(service_url, api_key=os.environ.get("SALT_API_KEY") or None) as client:
        sel = select(client, pool, method, count=count, fraction=fraction, diversity=diversity, seed=seed)
    typer.echo(f"selection {sel['id']}: {sel['count']} windows ({method}, diversity {diversity})")

def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``salt`` console script.

    SIGTERM (``kill``, ``docker stop``) unwinds like an exception, so the selector service that
    ``salt experiment`` and ``salt demo`` start as a child process is stopped with its parent.
    """
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    app(args=argv if argv is not None else sys.argv[1:], prog_name="salt")
