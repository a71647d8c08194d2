"""Selections without HTTP or a model: stored score rows of a sealed pool, chosen, stored and read back;
every refusal with its kind and code."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa

from selector_service.domain.methods import SelectionParams
from selector_service.domain.selections import create_selection, find_selection, params_of
from selector_service.store import pool_rows
from selector_service.store.cache_rows import SCORES_PARAMS, Row, put_rows
from selector_service.store.codec import pack_scores
from selector_service.store.database import Database
from shared.blobs.labels import checksum
from shared.hashing import window_hash
from tests.selector_service.conftest import assert_refused as refused

MODEL = "f" * 32 + ":fp32"
SALT_DS = [0.5, float("nan"), 2.0, 1.0, float("nan"), 3.0, 0.1, 1.5]  # two windows not selectable
DAMAGE = {"salt_cache": "UPDATE salt_cache SET checksum = :c",
          "salt_selection": "UPDATE salt_selection SET checksum = :c"}
ASK = {"method": "salt_ds", "count": None, "fraction": None, "diversity": "none", "seed": 0, "band_lo": 0.3,
       "band_hi": 0.9, "n_clusters": None, "dedup_threshold": 0.95}


def make_pool(database: Database, *, scored: int, sealed: bool = True) -> tuple[str, list[str]]:
    """A pool of len(SALT_DS) windows, the first ``scored`` of them with a score row for MODEL."""
    rng = np.random.default_rng([scored, sealed])  # other windows in each pool: score rows are keyed by hash
    windows = [rng.integers(0, 300, 9) for _ in SALT_DS]
    hashes = [window_hash(w) for w in windows]
    pid = pool_rows.create_pool(database=database, name=f"p{scored}{sealed}", dataset_fingerprint="ab",
                                tokenizer_hash="cd", window_len=9)["id"]
    pool_rows.put_windows(database=database, pool_id=pid, start=0, hashes=hashes, windows=windows)
    if sealed:
        pool_rows.seal_pool(database=database, pool_id=pid, count=len(windows))
    rows = []
    for i, h in enumerate(hashes[:scored]):
        figures = {"n_tokens": 8, "mean_loss": float(i), "median_loss": float(i), "top1_acc": 0.5,
                   "mean_entropy": 1.0, "salt_ds": SALT_DS[i]}
        blob = pack_scores(figures, np.eye(len(SALT_DS), dtype=np.float16)[i])
        rows.append(Row(h, SCORES_PARAMS, blob, checksum(blob)))
    put_rows(database=database, model=MODEL, rows=rows)
    return pid, hashes


def test_params_of_keeps_what_shapes_the_result() -> None:
    base = {"method": "salt_ds", "diversity": "none", "count": 5, "seed": 0}
    assert params_of(SelectionParams("salt_ds", 5), None) == base
    assert params_of(SelectionParams("salt_ds", 5), 0.5) == base | {"fraction": 0.5}
    assert params_of(SelectionParams("loss_band", 5, band_lo=0.1, band_hi=0.2), None) == base | {
        "method": "loss_band", "band_lo": 0.1, "band_hi": 0.2}
    assert params_of(SelectionParams("random", 5, diversity="kmeans", seed=3), None) == base | {
        "method": "random", "diversity": "kmeans", "seed": 3, "n_clusters": None}
    assert params_of(SelectionParams("salt_ds", 5, diversity="dedup", dedup_threshold=0.8), None) == base | {
        "diversity": "dedup", "dedup_threshold": 0.8}


def test_a_selection_is_chosen_stored_and_read_back(database: Database) -> None:
    pid, hashes = make_pool(database, scored=len(SALT_DS))
    made = create_selection(database, model=MODEL, pool_id=pid, **(ASK | {"count": 3}))
    assert made["model_fingerprint"] == "f" * 32 and made["precision"] == "fp32" and made["count"] == 3
    assert made["params"] == params_of(SelectionParams("salt_ds", 3), None)
    full = find_selection(database, selection_id=made["id"])
    assert full["indices"] == [2, 5, 7]  # SALT_DS 2.0, 3.0, 1.5: the highest three
    assert full["hashes"] == [hashes[i] for i in (2, 5, 7)]
    assert full | made == full
    assert create_selection(database, model=MODEL, pool_id=pid, **(ASK | {"count": 3})) == made  # stored, reused
    half = create_selection(database, model=MODEL, pool_id=pid, **(ASK | {"method": "random", "fraction": 0.5}))
    assert half["count"] == 4 and half["params"]["fraction"] == 0.5


def test_every_refusal_has_its_kind_and_code(database: Database) -> None:
    pid, _ = make_pool(database, scored=len(SALT_DS))
    ask = ASK | {"count": 2}
    refused("invalid", "invalid_budget", create_selection, database, model=MODEL, pool_id=pid, **ASK)
    refused("invalid", "invalid_budget", create_selection, database, model=MODEL, pool_id=pid,
            **(ask | {"fraction": 0.5}))
    refused("invalid", "invalid_request", create_selection, database, model=MODEL, pool_id=pid,
            **(ask | {"band_lo": 0.8, "band_hi": 0.2}))
    refused("not_found", "pool_not_found", create_selection, database, model=MODEL, pool_id="0" * 32, **ask)
    unsealed, _ = make_pool(database, scored=0, sealed=False)
    refused("conflict", "pool_not_sealed", create_selection, database, model=MODEL, pool_id=unsealed, **ask)
    partial, _ = make_pool(database, scored=6)
    msg = refused("conflict", "pool_not_scored", create_selection, database, model=MODEL, pool_id=partial, **ask)
    assert msg.startswith("6 of the pool's 8 windows are scored by the served model")
    refused("conflict", "pool_not_scored", create_selection, database, model="other:fp32", pool_id=pid, **ask)
    refused("invalid", "budget_too_small", create_selection, database, model=MODEL, pool_id=pid,
            **(ASK | {"fraction": 0.01}))
    refused("invalid", "budget_too_large", create_selection, database, model=MODEL, pool_id=pid,
            **(ASK | {"count": 9}))
    msg = refused("invalid", "selection_impossible", create_selection, database, model=MODEL, pool_id=pid,
                  **(ASK | {"count": 7}))
    assert "over the 6 candidates" in msg
    refused("not_found", "selection_not_found", find_selection, database, selection_id="0" * 32)


@pytest.mark.parametrize("table", ["salt_cache", "salt_selection"])
def test_damaged_rows_are_a_conflict_never_an_answer(database: Database, table: str) -> None:
    pid, _ = make_pool(database, scored=len(SALT_DS))
    made = create_selection(database, model=MODEL, pool_id=pid, **(ASK | {"count": 3}))
    with database.transaction() as conn:
        conn.execute(sa.text(DAMAGE[table]), {"c": "0" * 32})
    if table == "salt_cache":
        refused("conflict", "damaged_scores", create_selection, database, model=MODEL, pool_id=pid,
                **(ASK | {"count": 4}))
    else:
        assert refused("conflict", "damaged_selection", find_selection, database, selection_id=made["id"]) == (
            "the stored selection is damaged (checksum or length)")
