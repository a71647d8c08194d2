"""salt_ds: phase one draws exactly the stored selection; mismatches are refused before training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from shared.checkpoint import save_model
from shared.client import SelectorClient
from shared.data import PackedDataset
from shared.errors import SaltError
from shared.model import GPT, GPTConfig
from tests.trainer.recorders import record_asked_windows
from trainer.config import TrainConfig
from trainer.recipe import train
from trainer.recipe.metrics import read_metrics
from trainer.service_process import ServiceProcess
from trainer.teacher import _check_service


def test_salt_ds_trains_phase_one_on_the_selection_and_refuses_another_slm(
    tiny_dataset: PackedDataset, tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = f"sqlite:///{tmp_path / 'cache.sqlite'}"
    n_kd, batch = 3, 4
    with ServiceProcess(tiny_checkpoint, db) as svc, SelectorClient(svc.url) as client:
        pool = client.register_pool(tiny_dataset)
        job = client.wait_job(client.start_job(pool)["id"], poll_s=0.1, timeout_s=60)
        assert job["done"] == job["total"] == len(tiny_dataset.train)
        sel = client.create_selection(pool, "salt_ds", count=n_kd * batch)
        selected = set(client.selection(sel["id"])["hashes"])
        assert len(selected) == n_kd * batch

        asked = record_asked_windows(monkeypatch)
        cfg = TrainConfig.of(data=str(tiny_dataset.path), out=str(tmp_path / "run"), preset="llm-tiny", mode="salt_ds",
                          steps=6, n_kd=n_kd, batch_size=batch, warmup_steps=1, eval_every=3, eval_windows=8,
                          ckpt_every=6, device="cpu", service_url=svc.url, selection=sel["id"], kd_k=8)
        summary = train(cfg, progress=False)
    # One epoch over the selection: every selected window once, nothing else.
    assert sorted(asked) == sorted(selected)
    assert summary["service"]["requests"] == n_kd
    recs = [r for r in read_metrics(tmp_path / "run") if r["kind"] == "train"]
    assert [r["kd"] is not None for r in recs] == [True] * 3 + [False] * 3

    # The same selection asked of a service that runs another SLM is refused before training starts.
    torch.manual_seed(1)
    other = tmp_path / "other-slm"
    tok = tiny_dataset.tokenizer()
    save_model(other, GPT(GPTConfig.from_preset("slm-tiny", vocab_size=tok.get_vocab_size(), block_size=64)), tok)
    with ServiceProcess(other, db) as svc2:
        bad = TrainConfig.of(**{**cfg.to_dict(), "out": str(tmp_path / "run2"), "service_url": svc2.url})
        with pytest.raises(SaltError, match="another SLM"):
            train(bad, progress=False)
    assert not (tmp_path / "run2").exists()


def _info(ds: PackedDataset, **changes: object) -> dict[str, object]:
    info: dict[str, object] = {"fingerprint": "f", "vocab_size": ds.vocab_size, "tokenizer_hash": ds.tokenizer_hash,
                               "block_size": ds.seq_len, "label_defaults": {"k": 32, "max_k": 64}}
    info.update(changes)
    return info


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"vocab_size": 12345}, "vocabulary of 12345"), ({"tokenizer_hash": "x" * 32}, "another tokenizer"),
     ({"block_size": 4}, "context of 4"), ({"label_defaults": {"k": 8, "max_k": 8}}, "above the service's limit")],
)
def test_service_mismatches_are_refused(tiny_dataset: PackedDataset, changes: dict[str, object], message: str) -> None:
    cfg = TrainConfig.of(data=str(tiny_dataset.path), out="o", mode="salt", service_url="http://x", kd_k=32)
    _check_service(_info(tiny_dataset), cfg, tiny_dataset)  # the matching service passes
    with pytest.raises(SaltError, match=message):
        _check_service(_info(tiny_dataset, **changes), cfg, tiny_dataset)


@pytest.mark.parametrize(
    ("kw", "message"),
    [({"mode": "salt"}, "needs a selector service"), ({"mode": "salt_ds", "service_url": "http://x"},
     "needs a stored selection"),
     ({"mode": "salt", "service_url": "http://x", "selection": "s"}, "does not draw from a stored selection"),
     ({"n_kd": 500}, "within the run"), ({"kd_transition": "cos"}, "kd_transition"),
     ({"fault_policy": "ignore"}, "fault_policy"), ({"kd_k": 0}, "kd_k")],
)
def test_kd_config_errors(kw: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig.of(data="d", out="o", steps=100, **kw)  # type: ignore[arg-type]
