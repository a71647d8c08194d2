"""The models that scored a pool: how many windows each has scored, and the models a two-model selection names.

A pool can be scored by any number of models: each service (one model each) sharing the database runs its
own scoring job on it, and the cache keeps one score row per (model, window hash). A model is named by
its fingerprint, or by ``fingerprint:precision`` where it has scored in more than one precision.
Every function runs in a worker thread (it waits on the database).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from selector_service.domain.errors import DomainError
from selector_service.store import pool_rows
from selector_service.store.database import Database
from shared.selection import METHOD_ROLES


def scored_by(database: Database, *, pool_id: str, served: str) -> list[dict[str, Any]]:
    """``{"model_fingerprint", "precision", "scored"}`` of the served model and of every model that started a
    scoring job on the pool, sorted by fingerprint then precision."""
    keys = sorted({served, *pool_rows.job_models(database=database, pool_id=pool_id)})
    out = []
    for key in keys:
        fingerprint, _, precision = key.partition(":")
        scored = pool_rows.scored_count(database=database, pool_id=pool_id, model=key)
        out.append({"model_fingerprint": fingerprint, "precision": precision, "scored": scored})
    return out


def check_roles(method: str, models: Mapping[str, str] | None) -> dict[str, str] | None:
    """The ``models`` of a request checked against the method: its two roles for a two-model method, none
    for the others (they use the served model's scores)."""
    roles = METHOD_ROLES.get(method)
    if roles is None:
        if models:
            raise DomainError("invalid", "invalid_models", f"method {method} uses the served model's scores; "
                              "drop 'models' (it names the two models of reducible_loss, difference, conditional)")
        return None
    if not models or set(models) != set(roles):
        given = ", ".join(sorted(models or {})) or "none"
        raise DomainError("invalid", "invalid_models", f"method {method} needs 'models' with a fingerprint for "
                          f"'{roles[0]}' and '{roles[1]}' (given: {given})")
    if models[roles[0]] == models[roles[1]]:
        raise DomainError("invalid", "invalid_models",
                          f"method {method} compares two models; '{roles[0]}' and '{roles[1]}' name the same one")
    return {role: models[role] for role in roles}


def resolve_models(database: Database, pool: dict[str, Any], models: Mapping[str, str]) -> dict[str, str]:
    """The model key (fingerprint:precision) of each role, once that model has scored every window of the pool.

    Raises:
        DomainError: invalid (``ambiguous_model``: a fingerprint scored in several precisions), conflict
            (``scores_missing``: a model lacks scores of some windows, with how many).
    """
    return {role: _resolve(database, pool, role, name) for role, name in models.items()}


def _resolve(database: Database, pool: dict[str, Any], role: str, name: str) -> str:
    size = pool["count"]
    fingerprint = name.partition(":")[0]
    keys = [name] if ":" in name else pool_rows.model_keys(database=database, fingerprint=name)
    counts = {k: pool_rows.scored_count(database=database, pool_id=pool["id"], model=k) for k in keys}
    started = {k: n for k, n in counts.items() if n > 0}
    if len(started) > 1:
        named = ", ".join(sorted(started))
        raise DomainError("invalid", "ambiguous_model", f"model {role} ({fingerprint[:12]}) has scored the pool in "
                          f"several precisions ({named}); name one as fingerprint:precision")
    key, scored = next(iter(started.items())) if started else (name, 0)
    if scored < size:
        raise DomainError("conflict", "scores_missing",
                          f"model {role} ({fingerprint[:12]}) lacks scores of {size - scored} of the pool's {size} "
                          "windows; score the pool with a service serving it (`salt score --service-url URL`)")
    return key
