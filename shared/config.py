"""Settings as frozen dataclasses of groups, each default and allowed value written once.

A config class is a frozen dataclass whose fields are plain settings or nested config groups; every
setting has a name unique over the whole tree, so a config reads and writes as one flat mapping
(``{"lr": 2e-3, "kd_k": 32, ...}``): JSON files, saved run configs and the command line all use the
flat names, while code reads ``cfg.optim.lr``. A setting's documentation is the docstring written
under its field (as litgpt's ``args.py`` does); ``field_docs`` reads it back for ``--help``.

Bad values raise ``ConfigError``, one error type for every setting (a ``ValueError`` and a
``SaltError``, so the CLI reports it as one line).
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import itertools
import textwrap
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Self

from shared.errors import SaltError


class ConfigError(SaltError, ValueError):
    """A setting with a value it may not take; the message names the setting and what it accepts."""


@dataclass(frozen=True)
class Setting:
    """One leaf setting of a config tree."""

    name: str
    """Its flat name (unique over the tree; the CLI option is ``--name`` with dashes)."""
    path: tuple[str, ...]
    """Attribute path from the root config (``("optim", "lr")``)."""
    owner: type
    """The dataclass that declares it."""
    annotation: Any
    """Its resolved type."""
    default: Any
    """Its default value (``dataclasses.MISSING`` when it has none)."""
    doc: str
    """Its docstring, whitespace collapsed."""
    secret: bool
    """Kept out of ``to_dict`` (an API key, say)."""


class FlatConfig:
    """Mixin of the config dataclasses: flat construction, flat dicts and flat replacement."""

    @classmethod
    def settings(cls) -> list[Setting]:
        """Every leaf setting of the tree, in declaration order."""
        return list(_settings(cls))

    @classmethod
    def of(cls, **flat: Any) -> Self:
        """Build from flat names (``TrainConfig.of(data=..., lr=1e-3)``); unknown names are refused."""
        return _build(cls, flat, strict=True, base=None)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, strict: bool = False) -> Self:
        """Build from a flat dict (a saved config); names no longer known are ignored unless ``strict``."""
        return _build(cls, dict(data), strict=strict, base=None)

    def with_(self, **flat: Any) -> Self:
        """A copy with some settings changed, by flat name."""
        return _build(type(self), flat, strict=True, base=self)

    def to_dict(self) -> dict[str, Any]:
        """The flat mapping of every setting (secrets left out)."""
        return {s.name: self.get(s.name) for s in _settings(type(self)) if not s.secret}

    def get(self, name: str) -> Any:
        """A setting's value by flat name."""
        value: Any = self
        for attr in _index(type(self))[name].path:
            value = getattr(value, attr)
        return value


def secret(**kwargs: Any) -> Any:
    """A dataclass field kept out of ``to_dict`` and of ``repr`` (``default`` or ``default_factory`` as usual)."""
    return dataclasses.field(repr=False, metadata={"secret": True}, **kwargs)


def _is_group(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp) and issubclass(tp, FlatConfig)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _settings(cls: type, prefix: tuple[str, ...] = ()) -> Iterator[Setting]:
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        tp = _hints(cls)[f.name]
        if _is_group(tp):
            yield from _settings(tp, (*prefix, f.name))
            continue
        default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
        yield Setting(f.name, (*prefix, f.name), cls, tp, default, docs.get(f.name, ""),
                      bool(f.metadata.get("secret")))


@functools.cache
def _index(cls: type) -> dict[str, Setting]:
    out: dict[str, Setting] = {}
    for s in _settings(cls):
        if s.name in out:
            raise TypeError(f"{cls.__name__}: setting {s.name!r} is declared twice in its groups")
        out[s.name] = s
    return out


def _build(cls: type, flat: dict[str, Any], *, strict: bool, base: Any) -> Any:
    index = _index(cls)
    unknown = sorted(set(flat) - set(index))
    if unknown and strict:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(index))}")
    return _assemble(cls, {k: v for k, v in flat.items() if k in index}, base)


def _assemble(cls: type, flat: dict[str, Any], base: Any) -> Any:
    """Instantiate ``cls`` (and its groups) from flat values, the rest from ``base`` or the defaults."""
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        tp = _hints(cls)[f.name]
        current = getattr(base, f.name) if base is not None else None
        if _is_group(tp):
            names = {s.name for s in _settings(tp)}
            mine = {k: v for k, v in flat.items() if k in names}
            if mine or current is None:
                kwargs[f.name] = _assemble(tp, mine, current if current is not None else _default(f))
            else:
                kwargs[f.name] = current
        elif f.name in flat:
            value = flat[f.name]
            # JSON has lists where a setting is a tuple (modes, seeds): keep configs hashable and comparable.
            kwargs[f.name] = tuple(value) if typing.get_origin(tp) is tuple and isinstance(value, list) else value
        elif base is not None:
            kwargs[f.name] = current
    return cls(**kwargs)


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else None


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstrings written under a dataclass's fields (and its bases'), whitespace collapsed."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for stmt, nxt in itertools.pairwise(body):
            if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                    and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)):
                docs[stmt.target.id] = " ".join(nxt.value.value.split())
    return docs


def choices(annotation: Any) -> tuple[Any, ...] | None:
    """The allowed values of a ``Literal`` setting (also inside ``X | None``), else None."""
    if typing.get_origin(annotation) is typing.Literal:
        return typing.get_args(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if len(args) == 1 and typing.get_origin(args[0]) is typing.Literal:
        return typing.get_args(args[0])
    return None


def check_choice(name: str, value: Any, annotation: Any) -> None:
    """Refuse a value outside a ``Literal`` setting's allowed values."""
    allowed = choices(annotation)
    if allowed is not None and value not in allowed and value is not None:
        raise ConfigError(f"unknown {name} {value!r}; choose one of {', '.join(map(str, allowed))}")


def check_choices(obj: Any) -> None:
    """``check_choice`` for every ``Literal`` field of a dataclass instance (call from ``__post_init__``)."""
    for f in dataclasses.fields(obj):
        check_choice(f.name, getattr(obj, f.name), _hints(type(obj))[f.name])
