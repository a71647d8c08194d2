"""Two models over one database: two apps (one tiny checkpoint each, different seeds) score one pool, the
pool lists both, and two-model selections combine their stored mean losses; every refusal is one line."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
import torch
from fastapi.testclient import TestClient

from shared.checkpoint import save_model
from shared.client import SelectorClient
from shared.data import PackedDataset
from shared.model import GPT, GPTConfig
from tests.selector_service.conftest import assert_error, make_client

POOL = 24


@pytest.fixture(scope="module")
def other_checkpoint(tiny_dataset: PackedDataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second random-init ``slm-tiny`` (seed 1) with the tiny dataset's tokenizer: another model."""
    torch.manual_seed(1)
    tok = tiny_dataset.tokenizer()
    folder = tmp_path_factory.mktemp("ckpt") / "reference"
    save_model(folder, GPT(GPTConfig.from_preset("slm-tiny", vocab_size=tok.get_vocab_size(), block_size=64)), tok)
    return folder


@contextmanager
def two_services(first: Path, second: Path, url: str) -> Iterator[tuple[TestClient, TestClient]]:
    with make_client(first, url, job_chunk_windows=8) as a, make_client(second, url, job_chunk_windows=8) as b:
        yield a, b


def scored(sc: SelectorClient, pool_id: str) -> str:
    """Score the pool with the client's service; returns its model fingerprint."""
    sc.wait_job(sc.start_job(pool_id)["id"], poll_s=0.05, timeout_s=60)
    return str(sc.model_info()["fingerprint"])


def test_two_services_score_one_pool_and_a_reducible_loss_selection_combines_them(
    tiny_checkpoint: Path, other_checkpoint: Path, tiny_dataset: PackedDataset, db_url: str
) -> None:
    with two_services(tiny_checkpoint, other_checkpoint, db_url) as (a, b):
        learner = SelectorClient("http://testserver", http_client=a)
        reference = SelectorClient("http://testserver", http_client=b)
        pid = learner.register_pool(tiny_dataset, name="pair", indices=range(POOL))
        fp_l = scored(learner, pid)
        assert reference.pool(pid)["scored"] == 0  # the reference has not scored it yet
        fp_r = scored(reference, pid)
        assert fp_l != fp_r

        pool = learner.pool(pid)
        assert pool["scored"] == POOL  # the served model's count, as before
        assert pool["scored_by"] == sorted([{"model_fingerprint": fp, "precision": "fp32", "scored": POOL}
                                            for fp in (fp_l, fp_r)], key=lambda m: m["model_fingerprint"])

        windows = np.asarray(tiny_dataset.train.windows[:POOL], dtype=np.int64)
        mine, theirs = learner.scores(windows), reference.scores(windows)
        hashes = [s.hash for s in mine]
        pairs = enumerate(zip(mine, theirs, strict=True))
        ranked = sorted((-(m.mean_loss - r.mean_loss), m.hash, i) for i, (m, r) in pairs)
        models = {"learner": fp_l, "reference": fp_r}
        sel = learner.create_selection(pid, "reducible_loss", count=6, models=models)
        full = learner.selection(sel["id"])
        assert full["indices"] == sorted(i for *_, i in ranked[:6])
        assert full["hashes"] == [hashes[i] for i in full["indices"]]
        assert full["models"] == {"learner": f"{fp_l}:fp32", "reference": f"{fp_r}:fp32"}
        assert full["model_fingerprint"] == fp_l and "models" not in full["params"]
        # The served model plays no part: the reference's service answers the same stored selection.
        assert reference.create_selection(pid, "reducible_loss", count=6, models=models)["id"] == sel["id"]
        swapped = learner.selection(learner.create_selection(
            pid, "reducible_loss", count=6, models={"learner": fp_r, "reference": fp_l})["id"])
        assert swapped["indices"] == sorted(i for *_, i in ranked[-6:])  # the opposite end

        for method, roles, diversity in (("difference", ("teacher", "reference"), "kmeans"),
                                         ("conditional", ("prior", "conditional"), "dedup")):
            s = learner.create_selection(pid, method, fraction=0.5, diversity=diversity, seed=3,
                                         models=dict(zip(roles, (fp_l, fp_r), strict=True)))
            got = learner.selection(s["id"])
            assert got["count"] == len(got["indices"]) == POOL // 2 and got["params"]["diversity"] == diversity


def drop_scores(url: str, fingerprint: str, hashes: list[str]) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM salt_cache WHERE model LIKE :m AND window_hash = :h"),
                         [{"m": f"{fingerprint}:%", "h": h} for h in hashes])
    finally:
        engine.dispose()


def test_two_model_selections_are_refused_until_both_models_scored_the_pool(
    tiny_checkpoint: Path, other_checkpoint: Path, tiny_dataset: PackedDataset, sqlite_url: str
) -> None:
    with two_services(tiny_checkpoint, other_checkpoint, sqlite_url) as (a, b):
        sa_, sb = SelectorClient("http://testserver", http_client=a), SelectorClient("http://testserver", http_client=b)
        pid = sa_.register_pool(tiny_dataset, name="refusals", indices=range(POOL))
        fp_l = scored(sa_, pid)
        fp_r = str(sb.model_info()["fingerprint"])
        ask = {"pool_id": pid, "method": "reducible_loss", "count": 4}

        def refused(status: int, code: str, **body: object) -> str:
            return str(assert_error(a.post("/v1/selections", json=ask | body), status, code)["message"])

        msg = refused(409, "scores_missing", models={"learner": fp_l, "reference": fp_r})
        assert f"model reference ({fp_r[:12]}) lacks scores of {POOL} of the pool's {POOL} windows" in msg
        assert "salt score" in msg and "\n" not in msg
        scored(sb, pid)
        drop_scores(sqlite_url, fp_r, tiny_dataset.train.hashes[:5])
        msg = refused(409, "scores_missing", models={"learner": fp_l, "reference": fp_r})
        assert f"lacks scores of 5 of the pool's {POOL} windows" in msg

        assert "'learner' and 'reference' (given: learner)" in refused(422, "invalid_models", models={"learner": fp_l})
        assert "given: none" in refused(422, "invalid_models")
        assert "same one" in refused(422, "invalid_models", models={"learner": fp_l, "reference": fp_l})
        assert "drop 'models'" in refused(422, "invalid_models", method="salt_ds",
                                          models={"learner": fp_l, "reference": fp_r})
        refused(422, "invalid_models", models={"teacher": fp_l, "reference": fp_r})
        refused(422, "invalid_request", models={"learner": "NOT-HEX", "reference": fp_r})
        refused(422, "invalid_request", models={"learner": fp_l, "reference": fp_r, "teacher": fp_r})


@pytest.mark.parametrize(("change", "status", "code"), [("context", 422, "window_too_long"),
                                                        ("tokenizer", 409, "tokenizer_mismatch")])
def test_a_model_that_cannot_score_the_pool_is_refused_its_job(
    tiny_checkpoint: Path, tiny_dataset: PackedDataset, sqlite_url: str, tmp_path: Path, change: str, status: int,
    code: str
) -> None:
    tok = tiny_dataset.tokenizer()
    if change == "tokenizer":
        tok.add_special_tokens(["<|other|>"])
    block = 16 if change == "context" else 64  # the pool's windows predict 32 positions
    torch.manual_seed(2)
    save_model(tmp_path / "m", GPT(GPTConfig.from_preset("slm-tiny", vocab_size=tok.get_vocab_size(),
                                                         block_size=block)), tok)
    with two_services(tiny_checkpoint, tmp_path / "m", sqlite_url) as (a, b):
        pid = SelectorClient("http://testserver", http_client=a).register_pool(tiny_dataset, name="fit",
                                                                                indices=range(8))
        assert_error(b.post("/v1/jobs", json={"pool_id": pid}), status, code)
