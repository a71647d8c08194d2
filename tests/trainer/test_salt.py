"""SALT against the real service (uvicorn subprocess): phase one asks, phase two never does; faults."""

from __future__ import annotations

import itertools
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from shared.client import SelectorClient
from shared.config import ConfigError
from shared.data import PackedDataset
from shared.errors import SaltError
from tests.servers import sqlite_server, start_server, stop_server
from trainer.batches import SaltBatches
from trainer.config import TrainConfig
from trainer.recipe import train
from trainer.recipe.metrics import read_metrics
from trainer.sampling import batch_indices

LABEL_ROUTE = 'salt_requests_total{method="POST",route="/v1/soft-labels",status="200"}'


@pytest.fixture
def service(tiny_checkpoint: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen, str]]:
    with sqlite_server(tiny_checkpoint, tmp_path) as served:
        yield served


def salt_cfg(ds: PackedDataset, out: Path, url: str, **kw: object) -> TrainConfig:
    base = dict(data=str(ds.path), out=str(out), preset="llm-tiny", mode="salt", steps=8, n_kd=3, batch_size=4,
                warmup_steps=1, eval_every=4, eval_windows=8, ckpt_every=4, device="cpu", service_url=url,
                retry_deadline_s=2.0, kd_k=8)
    base.update(kw)
    return TrainConfig.of(**base)  # type: ignore[arg-type]


def label_requests(url: str) -> float:
    with SelectorClient(url) as c:
        return c.metrics().get(LABEL_ROUTE, 0.0)


def test_phase_one_asks_phase_two_does_not_and_a_second_run_hits_the_cache(
    tiny_dataset: PackedDataset, tmp_path: Path, service: tuple[subprocess.Popen, str]
) -> None:
    _, url = service
    cfg = salt_cfg(tiny_dataset, tmp_path / "a", url, grad_accum=2)
    summary = train(cfg, progress=False)
    recs = [r for r in read_metrics(tmp_path / "a") if r["kind"] == "train"]
    assert [r["kd_weight"] for r in recs] == [0.5] * 3 + [0.0] * 5
    assert all(r["kd"] is not None for r in recs[:3]) and all(r["kd"] is None for r in recs[3:])
    # Exactly one request per phase-one micro-batch reached the server, none after.
    assert label_requests(url) == 3 * 2 == summary["service"]["requests"]
    assert summary["service"]["cache_misses"] > 0
    assert summary["service"]["slm_forward_passes"] > 0
    assert summary["fallback_batches"] == 0

    # Another LLM size over the same data order: every label from the cache, no SLM forward pass.
    second = train(cfg.with_(out=str(tmp_path / "b"), preset="slm-tiny"), progress=False)
    assert second["service"]["cache_hits"] == 3 * 2 * 4
    assert second["service"]["cache_misses"] == 0
    assert second["service"]["slm_forward_passes"] == 0


def test_phase_two_trains_with_the_service_stopped(
    tiny_dataset: PackedDataset, tmp_path: Path, service: tuple[subprocess.Popen, str]
) -> None:
    proc, url = service
    cfg = salt_cfg(tiny_dataset, tmp_path / "run", url, n_kd=4, ckpt_every=4)
    stop_at = 5

    import trainer.recipe.metrics as tt

    original = tt.MetricsLog.write

    class Stop(Exception):
        pass

    def write(self: tt.MetricsLog, record: dict[str, object]) -> None:
        original(self, record)
        if record["kind"] == "train" and record["step"] == stop_at:
            raise Stop

    tt.MetricsLog.write = write  # type: ignore[method-assign]
    try:
        with pytest.raises(Stop):
            train(cfg, progress=False)
    finally:
        tt.MetricsLog.write = original  # type: ignore[method-assign]
    stop_server(proc)  # phase one is over (checkpoint at step 4): the rest needs no service
    summary = train(cfg, resume=True, progress=False)
    assert summary["service"] is None
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == 8


def kill_at(monkeypatch: pytest.MonkeyPatch, proc: subprocess.Popen, step: int) -> None:
    """Stop the service just before the prefetcher asks for ``step``'s labels."""
    import trainer.teacher as tt

    original = tt.Teacher.windows_for

    def windows_for(self: tt.Teacher, s: int, micro: int) -> np.ndarray:
        if s == step:
            stop_server(proc)
        return original(self, s, micro)

    monkeypatch.setattr(tt.Teacher, "windows_for", windows_for)


def test_fallback_when_the_service_dies_in_phase_one(
    tiny_dataset: PackedDataset, tmp_path: Path, service: tuple[subprocess.Popen, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proc, url = service
    kill_at(monkeypatch, proc, step=2)
    cfg = salt_cfg(tiny_dataset, tmp_path / "run", url, fault_policy="fallback", n_kd=4, retry_deadline_s=0.5)
    summary = train(cfg, progress=False)
    recs = [r for r in read_metrics(tmp_path / "run") if r["kind"] == "train"]
    assert [r["fallback_batches"] for r in recs] == [0, 0, 1, 1, 0, 0, 0, 0]
    assert [r["kd"] is not None for r in recs[:4]] == [True, True, False, False]
    assert summary["fallback_batches"] == 2 == summary["service"]["fallback_batches"]
    assert summary["steps"] == 8 and (tmp_path / "run" / "checkpoint" / "model.safetensors").is_file()


def test_fail_policy_stops_with_a_usable_checkpoint(
    tiny_dataset: PackedDataset, tiny_checkpoint: Path, tmp_path: Path, service: tuple[subprocess.Popen, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proc, url = service
    kill_at(monkeypatch, proc, step=2)
    cfg = salt_cfg(tiny_dataset, tmp_path / "run", url, fault_policy="fail", n_kd=4, retry_deadline_s=0.5)
    with pytest.raises(SaltError, match=r"selector service failed at step 3.*checkpoint of step 2"):
        train(cfg, progress=False)
    assert json.loads((tmp_path / "run" / "checkpoint" / "config.json").read_text())["step"] == 2
    monkeypatch.undo()
    # The service comes back (same cache): the run resumes from its checkpoint and finishes.
    proc2, url2 = start_server(tiny_checkpoint, f"sqlite:///{tmp_path / 'cache.sqlite'}")
    try:
        summary = train(cfg.with_(service_url=url2), resume=True, progress=False)
    finally:
        stop_server(proc2)
    assert summary["steps"] == 8
    assert summary["fallback_batches"] == 0


def test_bad_service_settings_fail_before_training(tiny_dataset: PackedDataset, tmp_path: Path) -> None:
    cfg = salt_cfg(tiny_dataset, tmp_path / "run", "http://127.0.0.1:9", retry_deadline_s=0.2)
    with pytest.raises(SaltError, match="selector service"):
        train(cfg, progress=False)
    assert not (tmp_path / "run").exists()


def test_labels_asked_by_hash_equal_those_of_uploaded_windows(
    tiny_dataset: PackedDataset, tmp_path: Path, service: tuple[subprocess.Popen, str]
) -> None:
    _, url = service
    cfg = salt_cfg(tiny_dataset, tmp_path / "a", url, grad_accum=2)
    windows = tiny_dataset.train.windows
    idx = [batch_indices(s, m, n=len(windows), batch_size=4, grad_accum=2, seed=cfg.seed) for s in range(3)
           for m in range(2)]
    with SelectorClient(url) as c:
        c.soft_labels(windows[np.concatenate([idx[0], idx[1][:2]])], k=8)  # one micro-batch cached, one in part
        before = c.metrics().get(LABEL_ROUTE, 0.0)
        with SaltBatches(cfg) as batches:
            micro = [m for b in itertools.islice(batches, 3) for m in b.micro]
        assert c.metrics()[LABEL_ROUTE] - before == 5  # the fully cached micro-batch sent no window
        for m, i in zip(micro, idx, strict=True):
            ref = c.soft_labels(windows[i], k=8)
            assert m.labels is not None and m.labels.hashes == ref.hashes
            for name in ("ids", "logprobs", "tail", "lengths"):
                assert torch.equal(getattr(m.labels, name), getattr(ref, name)), name


def test_sampled_labels_train_and_name_the_run_only_when_asked(
    tiny_dataset: PackedDataset, tmp_path: Path, service: tuple[subprocess.Popen, str]
) -> None:
    _, url = service
    cfg = salt_cfg(tiny_dataset, tmp_path / "s", url, steps=4, n_kd=2, kd_labels="sample", kd_draws=16)
    summary = train(cfg, progress=False)
    recs = [r for r in read_metrics(tmp_path / "s") if r["kind"] == "train"]
    assert all(r["kd"] is not None and r["kd"] > 0 for r in recs[:2]) and all(r["kd"] is None for r in recs[2:])
    assert summary["service"]["requests"] == 2 and summary["fallback_batches"] == 0
    # A second run asks by hash: every window of phase one answered from the cache, none uploaded or computed.
    with SelectorClient(url) as c:
        before = c.metrics().get(LABEL_ROUTE, 0.0)
        again = train(cfg.with_(out=str(tmp_path / "s2")), progress=False)["service"]
        assert c.metrics().get(LABEL_ROUTE, 0.0) == before
    assert again["windows_computed"] == 0 and again["cache_hits"] == 2 * cfg.optim.batch_size
    # Run names: the defaults (top-k, 64 draws) add nothing, so existing names stay; sample is named.
    assert "kd_labels" not in salt_cfg(tiny_dataset, tmp_path, url).distinct()
    assert {"kd_labels": "sample", "kd_draws": 16}.items() <= cfg.distinct().items()
    with pytest.raises(ConfigError, match="kd_draws"):
        salt_cfg(tiny_dataset, tmp_path, url, kd_labels="sample", kd_draws=256)
