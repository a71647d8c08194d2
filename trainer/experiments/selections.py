"""The selections an experiment trains phase one on: the SLM's ``salt_ds`` one, and the two-model ones of the
``rho`` and ``difference`` modes (the SLM and a reference SLM, each served by its own service over one cache).

Each selection is recorded under ``root/selections`` by a key of what makes it, and reused while the cache
still holds it; every selection of a root draws from the same pool of train windows.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from shared.client import SelectorClient, SelectorError
from shared.data import PackedDataset
from shared.errors import SaltError
from trainer.experiments.config import PAIR_MODES, ExperimentConfig
from trainer.pool_scoring import score_pool, select
from trainer.recipe.checkpointing import CKPT_DIR
from trainer.service_process import ServiceProcess

ROLES = {"rho": ("learner", "reference"), "difference": ("teacher", "reference")}
"""Which role of its method the SLM and the reference SLM take in each two-model mode."""


def settings_key(settings: dict[str, Any]) -> str:
    """A short, stable name for a set of settings (what makes two runs the same run)."""
    blob = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.blake2b(blob.encode(), digest_size=4).hexdigest()


def _budget_and_pool(cfg: ExperimentConfig, ds: PackedDataset, what: str) -> tuple[int, int]:
    budget = cfg.n_kd * cfg.optim.batch_size
    n = min(cfg.pool_windows, len(ds.train))
    if budget > n:
        raise SaltError(f"the {what} budget ({budget} windows) is larger than the pool ({n})",
                        "raise pool_windows or lower the phase-one steps")
    return budget, n


def _score(client: SelectorClient, ds: PackedDataset, n: int, progress: bool) -> str:
    """Score the root's pool (a seeded random ``n`` train windows) with the client's model; its pool id."""
    indices = np.sort(np.random.default_rng(0).choice(len(ds.train), size=n, replace=False))
    return str(score_pool(client, ds, name=f"pool-{n}", indices=indices.tolist(), progress=progress)["pool_id"])


def _recorded(cfg: ExperimentConfig, client: SelectorClient, ds: PackedDataset, mode: str, **extra: str
              ) -> tuple[int, int, dict[str, Any], dict[str, Any], Path, str | None]:
    """A mode's selection budget and pool size, the served model's info, the settings the selection is
    recorded under (``extra`` added), the record's file, and the recorded id when it can be reused."""
    budget, n = _budget_and_pool(cfg, ds, mode)
    info = client.model_info()
    wanted = {**extra, "model_fingerprint": info["fingerprint"], "count": budget, "pool": n,
              "diversity": cfg.selection_diversity, "precision": info["precision"]}
    record = Path(cfg.root) / "selections" / f"{settings_key(wanted)}.json"
    return budget, n, info, wanted, record, _reused(record, wanted, client)


def _reused(record: Path, wanted: dict[str, Any], client: SelectorClient) -> str | None:
    """The id of the recorded selection made with ``wanted``, if the cache still holds it."""
    if not record.is_file():
        return None
    saved = json.loads(record.read_text())
    if {k: saved.get(k) for k in wanted} != wanted:
        return None
    try:
        client.selection(saved["id"])
    except SelectorError:  # gone (a new cache database): make it again
        return None
    return str(saved["id"])


def _record(record: Path, sid: str, wanted: dict[str, Any]) -> None:
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"id": sid, **wanted}) + "\n")


def ensure_selection(cfg: ExperimentConfig, client: SelectorClient, ds: PackedDataset,
                     report: Callable[[str], None], progress: bool) -> str:
    """The ``salt_ds`` selection (one for every seed: the SLM's choice does not depend on the LLM's seed)."""
    budget, n, _info, wanted, record, sid = _recorded(cfg, client, ds, "salt_ds")
    if sid is not None:
        report(f"reusing selection {sid}")
        return sid
    report(f"scoring a pool of {n} train windows with the SLM")
    pool_id = _score(client, ds, n, progress)
    sel = select(client, pool_id, "salt_ds", count=budget, diversity=cfg.selection_diversity)
    report(f"selected {sel['count']} windows by SALT_DS score (selection {sel['id']})")
    _record(record, str(sel["id"]), wanted)
    return str(sel["id"])


def ensure_pair_selection(cfg: ExperimentConfig, mode: str, client: SelectorClient, ds: PackedDataset, *,
                          reference: Path, db: str, service_env: dict[str, str],
                          report: Callable[[str], None], progress: bool) -> str:
    """The selection of a two-model mode: the pool scored by the SLM (``client``'s service) and by the
    reference SLM (the run folder ``reference``: its checkpoint served by a second service over the same
    cache ``db`` for the time it takes), then the mode's method over both models' stored scores.

    The reference's run folder is named by a key of its settings, so it stands for the model in the record:
    a recorded selection is reused without starting the reference's service.
    """
    method, (slm_role, ref_role) = PAIR_MODES[mode], ROLES[mode]
    budget, n, info, wanted, record, sid = _recorded(cfg, client, ds, mode, method=method,
                                                     reference=reference.name)
    if sid is not None:
        report(f"reusing {mode} selection {sid}")
        return sid
    report(f"scoring a pool of {n} train windows with the SLM and with the reference SLM {reference}")
    pool_id = _score(client, ds, n, progress)
    with ServiceProcess(reference / CKPT_DIR, db, env=service_env) as svc, SelectorClient(svc.url) as ref:
        if _score(ref, ds, n, progress) != pool_id:
            raise SaltError("the two services registered the pool under different ids",
                            "give both services the same cache database")
        models = {slm_role: info["fingerprint"], ref_role: ref.model_info()["fingerprint"]}
    sel = select(client, pool_id, method, count=budget, diversity=cfg.selection_diversity, models=models)
    report(f"selected {sel['count']} windows by {method} of {slm_role} and {ref_role} (selection {sel['id']})")
    _record(record, str(sel["id"]), wanted)
    return str(sel["id"])
