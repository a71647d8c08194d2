"""Command options derived from the config dataclasses, as litgpt derives its CLI from its dataclasses.

``@with_config(TrainConfig)`` gives a command one ``--option`` per setting of the config tree (flat
name with dashes), its help the setting's docstring, its default the config's, its choices the
setting's ``Literal``; the command receives the built config. Nothing about a setting is written in
the CLI itself.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Iterable
from typing import Annotated, Any

import typer

from shared.config import FlatConfig, Setting, choices


def default_of(cls: type[FlatConfig], name: str) -> Any:
    """A setting's default value."""
    return next(s.default for s in cls.settings() if s.name == name)


def choice_metavar(values: Iterable[object]) -> str:
    """How a choice setting shows its values in ``--help``: ``[a|b|c]``."""
    return "[" + "|".join(map(str, values)) + "]"


def option_for(setting: Setting, default: Any, *, help_text: str | None = None) -> inspect.Parameter:
    """The typer option of one setting: its help, default and (for a ``Literal``) its choices."""
    info: dict[str, Any] = {"help": (help_text if help_text is not None else setting.doc).replace("``", "`")}
    annotation = setting.annotation
    allowed = choices(annotation)
    if allowed is not None:
        # Shown as a choice, checked by the config: a bad value is one error line like any other bad setting.
        annotation = str
        info["metavar"] = choice_metavar(allowed)
    if setting.secret:
        info |= {"envvar": f"SALT_{setting.name.upper()}", "show_default": False}
        default = None
    return inspect.Parameter(setting.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[annotation, typer.Option(**info)])


def with_config(cls: type[FlatConfig], *, defaults: FlatConfig | None = None, only: Iterable[str] | None = None,
                exclude: Iterable[str] = (), param: str = "cfg") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a command that takes ``cfg`` (a ``cls``): its options become the config's settings.

    Args:
        cls: the config class.
        defaults: the config the options start from (default: ``cls()``).
        only: derive options for these settings alone (the others keep ``defaults``' values).
        exclude: settings left out.
        param: the command's parameter that receives the config.
    """
    keep = set(only) if only is not None else None
    settings = [s for s in cls.settings() if s.name not in set(exclude) and (keep is None or s.name in keep)]

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        hints = typing.get_type_hints(fn, include_extras=True)
        own = [p.replace(annotation=hints.get(p.name, p.annotation), kind=inspect.Parameter.KEYWORD_ONLY)
               for p in inspect.signature(fn).parameters.values() if p.name != param]
        base = defaults if defaults is not None else cls()
        derived = [option_for(s, base.get(s.name)) for s in settings]

        @functools.wraps(fn)
        def command(**kwargs: Any) -> Any:
            flat = {s.name: kwargs.pop(s.name) for s in settings}
            return fn(**kwargs, **{param: base.with_(**flat)})

        params = derived + own
        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        del command.__wrapped__  # typer reads the signature above, not the wrapped function's
        return command

    return decorate
