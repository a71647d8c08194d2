"""Real uvicorn processes: the wire format, the async client, and two replicas sharing one PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
import torch

from shared.checkpoint import load_model
from shared.client import AsyncSelectorClient, SelectorClient, SelectorError
from shared.data import PackedDataset
from shared.hashing import window_hash
from tests.reference import topk_soft_labels
from tests.servers import free_port, start_server, stop_server


def test_two_replicas_on_one_postgres_hammered_in_parallel(
    tiny_checkpoint: Path, tiny_dataset: PackedDataset, pg_url: str
) -> None:
    pool = np.asarray(tiny_dataset.split("train").windows[:24], dtype=np.int64)
    servers = [start_server(tiny_checkpoint, pg_url, SALT_API_KEY="k") for _ in range(2)]
    try:
        urls = [base for _, base in servers]
        rng = np.random.default_rng(0)
        # Overlapping batches: every window is asked for many times, through both replicas at once.
        jobs = [(urls[i % 2], rng.choice(len(pool), 8, replace=False)) for i in range(24)]

        def call(job: tuple[str, np.ndarray]) -> tuple[np.ndarray, object, object]:
            url, idx = job
            with SelectorClient(url, api_key="k", retry_deadline_s=30) as c:
                return idx, c.soft_labels(pool[idx], k=8), c.scores(pool[idx])

        with ThreadPoolExecutor(8) as ex:
            results = list(ex.map(call, jobs))

        first: dict[int, torch.Tensor] = {}
        for idx, labels, scores in results:
            assert labels.hashes == [window_hash(pool[i]) for i in idx]
            assert [s.hash for s in scores] == labels.hashes
            for j, i in enumerate(idx):
                ref = first.setdefault(int(i), labels.logprobs[j])
                torch.testing.assert_close(labels.logprobs[j], ref)

        async def async_check() -> None:
            async with AsyncSelectorClient(urls, api_key="k") as ac:
                info = await ac.model_info()
                sl = await ac.soft_labels(pool[:4], k=8)
                sc = await ac.scores(pool[:4])
                m = await ac.metrics()
            assert info["preset"] == "slm-tiny"
            assert sl.ids.shape == (4, 32, 8) and len(sc) == 4
            assert m["salt_cache_hits_total"] > 0

        asyncio.run(async_check())

        # Over the wire, the labels equal an in-process forward of the same checkpoint.
        model, _, _ = load_model(tiny_checkpoint)
        with torch.inference_mode():
            ref_ids, ref_lp, ref_tail = topk_soft_labels(model(torch.from_numpy(pool[:, :-1])), 8)
        with SelectorClient(urls[1], api_key="k") as c:
            got = c.soft_labels(pool, k=8)
        assert torch.equal(got.ids, ref_ids)
        torch.testing.assert_close(got.logprobs, ref_lp, atol=1e-2, rtol=1e-3)
        torch.testing.assert_close(got.tail, ref_tail, atol=1e-2, rtol=1e-3)

        engine = sa.create_engine(pg_url)
        with engine.connect() as conn:
            counts = conn.execute(sa.text(
                "SELECT window_hash, params, count(*) FROM salt_cache GROUP BY model, window_hash, params"
            )).all()
        engine.dispose()
        asked = {int(i) for _, idx in jobs for i in idx}
        assert all(n == 1 for *_, n in counts)
        assert len(counts) == 2 * len(asked)  # one scores row and one k=8 labels row per window
        with SelectorClient(urls[0], api_key="k") as c:
            with pytest.raises(SelectorError) as e:
                c.soft_labels([[1, 2, 10**6]])
            assert e.value.status == 422 and e.value.code == "token_out_of_vocab" and e.value.request_id
    finally:
        for proc, _ in servers:
            stop_server(proc)


def test_client_retries_until_its_deadline() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with SelectorClient(url, retry_deadline_s=0.5, backoff_s=0.05) as c, pytest.raises(SelectorError) as e:
        c.model_info()
    assert e.value.code == "unreachable"


def test_a_bad_checkpoint_fails_start_up_with_one_clear_line(tmp_path: Path) -> None:
    env = {"SALT_MODEL_PATH": str(tmp_path / "missing"), "SALT_DATABASE_URL": f"sqlite:///{tmp_path / 'c.sqlite'}"}
    r = subprocess.run([sys.executable, "-m", "selector_service", "--port", str(free_port())],
                       env={**os.environ, **env}, capture_output=True, text=True, timeout=180)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("error: model folder not found")
    assert "Traceback" not in r.stderr
