"""The ``salt`` command line: a thin typed layer over the library functions.

Every subcommand turns a ``SaltError`` into one line on stderr and exit status 1.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

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
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S"
    )


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


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``salt`` console script."""
    app(args=argv if argv is not None else sys.argv[1:], prog_name="salt")
