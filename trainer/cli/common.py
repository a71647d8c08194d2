"""What every ``salt`` command shares: one-line errors and logging."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from shared.client import SelectorError
from shared.errors import SaltError

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(fn: F) -> F:
    """Report ``SaltError`` (bad settings and input) and service errors as one line, exit 1."""

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


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S"
    )
    # One line per HTTP request would drown the progress of phase one.
    logging.getLogger("httpx").setLevel(logging.DEBUG if verbose else logging.WARNING)


def split_list(text: str) -> tuple[str, ...]:
    """``"a, b,c"`` -> ``("a", "b", "c")``."""
    return tuple(part.strip() for part in text.split(",") if part.strip())
