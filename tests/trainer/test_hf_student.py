"""A Hugging Face causal LM as the student: trained in ``salt`` mode through the service, resumed exactly,
saved as a folder ``transformers`` loads with the same logits, continued from its weights; bad models refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from shared.client import SelectorClient
from shared.data import PackedDataset
from shared.errors import SaltError
from shared.lm import load_lm
from tests.hf_models import config_file, model_folder, transformers_logits
from tests.servers import start_server, stop_server
from tests.trainer.test_train import _comparable, _metrics_close, _params, _Stop, _train_until
from trainer.config import TrainConfig
from trainer.recipe import train
from trainer.recipe.metrics import read_metrics

CPU = torch.device("cpu")


@pytest.fixture(params=["gpt", "hf"])
def slm(request: pytest.FixtureRequest, tiny_checkpoint: Path, tiny_dataset: PackedDataset,
        tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The served SLM: the project's own GPT checkpoint, or a Hugging Face Qwen2 with padded output rows."""
    if request.param == "gpt":
        return tiny_checkpoint
    return model_folder(tmp_path_factory.mktemp("hf-slm"), "qwen2", tiny_dataset, seed=3, padding_rows=10)


@pytest.fixture
def service(slm: Path, tmp_path: Path) -> Iterator[str]:
    proc, url = start_server(slm, f"sqlite:///{tmp_path / 'cache.sqlite'}")
    try:
        yield url
    finally:
        stop_server(proc)


def hf_cfg(ds: PackedDataset, out: Path, model: Path, **kw: object) -> TrainConfig:
    base = dict(data=str(ds.path), out=str(out), model=str(model), steps=8, batch_size=4, grad_accum=2,
                warmup_steps=1, eval_every=4, eval_windows=8, ckpt_every=4, device="cpu", precision="fp32")
    return TrainConfig.of(**{**base, **kw})


def test_hf_student_in_salt_mode_resumes_exactly_and_loads_in_transformers(
    tiny_dataset: PackedDataset, tmp_path: Path, service: str
) -> None:
    cfg_file = config_file(tmp_path / "llama", "llama", tiny_dataset)
    cfg = hf_cfg(tiny_dataset, tmp_path / "straight", cfg_file, mode="salt", n_kd=4, service_url=service, kd_k=8)
    summary = train(cfg, progress=False)
    recs = [r for r in read_metrics(tmp_path / "straight") if r["kind"] == "train"]
    assert [r["kd"] is not None for r in recs] == [True] * 4 + [False] * 4
    assert summary["service"]["requests"] == 4 * 2 and summary["preset"] == "llama"

    # A crash after step 6 (last checkpoint at 4), then --resume: the same parameters and metrics.
    split = cfg.with_(out=str(tmp_path / "split"))
    with pytest.raises(_Stop):
        _train_until(split, stop_after=6)
    train(split, resume=True, progress=False)
    a, b = _params(tmp_path / "straight"), _params(tmp_path / "split")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=1e-7)
    assert _metrics_close(_comparable(tmp_path / "straight"), _comparable(tmp_path / "split"))

    # The checkpoint is a Hugging Face folder: transformers gives the logits the trainer's model gives.
    ckpt = tmp_path / "straight" / "checkpoint"
    ids = torch.from_numpy(tiny_dataset.val.windows[:2, :-1].astype("int64"))
    lm = load_lm(ckpt, device=CPU)
    assert lm.kind == "hf" and lm.tokenizer_hash == tiny_dataset.tokenizer_hash
    with torch.no_grad():
        ours = lm.model(ids).float()
    torch.testing.assert_close(transformers_logits(ckpt, ids, tiny_dataset.vocab_size), ours)
    torch.testing.assert_close(transformers_logits(tmp_path / "split" / "checkpoint", ids, tiny_dataset.vocab_size),
                               ours, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("slm", ["hf"], indirect=True)
def test_hf_student_in_kd_full_and_salt_ds_against_a_hf_slm(tiny_dataset: PackedDataset, tmp_path: Path,
                                                            service: str) -> None:
    with SelectorClient(service) as client:
        pool = client.register_pool(tiny_dataset)
        client.wait_job(client.start_job(pool)["id"], poll_s=0.1, timeout_s=120)
        selection = client.create_selection(pool, "salt_ds", count=2 * 4)["id"]
    cfg_file = config_file(tmp_path / "neox", "neox", tiny_dataset)
    for mode, extra, kd in (("kd_full", {}, [True] * 4), ("salt_ds", {"n_kd": 2, "selection": selection},
                                                          [True] * 2 + [False] * 2)):
        cfg = hf_cfg(tiny_dataset, tmp_path / mode, cfg_file, mode=mode, service_url=service, kd_k=8, steps=4,
                     grad_accum=1, eval_every=2, ckpt_every=2, **extra)
        summary = train(cfg, progress=False)
        assert [r["kd"] is not None for r in read_metrics(tmp_path / mode) if r["kind"] == "train"] == kd, mode
        assert summary["preset"] == "neox" and summary["service"]["requests"] == len([x for x in kd if x])


@pytest.mark.parametrize("slm", ["gpt"], indirect=True)
def test_continued_from_a_folder_starts_from_its_weights(tiny_dataset: PackedDataset, tmp_path: Path,
                                                         slm: Path) -> None:
    cfg_file = config_file(tmp_path / "gpt2", "gpt2", tiny_dataset)
    first = train(hf_cfg(tiny_dataset, tmp_path / "first", cfg_file, steps=4, grad_accum=1), progress=False)
    folder = tmp_path / "first" / "checkpoint"
    again = hf_cfg(tiny_dataset, tmp_path / "again", folder, steps=2, grad_accum=1, eval_every=1)
    train(again, progress=False)
    start = next(r for r in read_metrics(tmp_path / "again") if r["kind"] == "eval" and r["step"] == 0)
    assert start["val_loss"] == pytest.approx(first["val_loss"], rel=1e-6)  # the weights it was given


@pytest.mark.parametrize("slm", ["gpt"], indirect=True)
def test_bad_hf_students_are_refused_before_training(tiny_dataset: PackedDataset, tmp_path: Path, slm: Path) -> None:
    short = config_file(tmp_path / "short", "llama", tiny_dataset, context=8)
    with pytest.raises(SaltError, match=r"context .* is shorter than the dataset's windows"):
        train(hf_cfg(tiny_dataset, tmp_path / "a", short), progress=False)
    narrow = tmp_path / "narrow"
    narrow.mkdir()
    cfg = json.loads(config_file(tmp_path / "wide", "llama", tiny_dataset).read_text())
    (narrow / "config.json").write_text(json.dumps({**cfg, "vocab_size": tiny_dataset.vocab_size - 5}))
    with pytest.raises(SaltError, match="fewer than the tokenizer's"):
        train(hf_cfg(tiny_dataset, tmp_path / "b", narrow / "config.json"), progress=False)
    t5 = tmp_path / "t5"
    t5.mkdir()
    (t5 / "config.json").write_text(json.dumps({"model_type": "t5", "vocab_size": tiny_dataset.vocab_size}))
    with pytest.raises(SaltError, match="is not a causal language model"):
        train(hf_cfg(tiny_dataset, tmp_path / "c", t5 / "config.json"), progress=False)
    assert not (tmp_path / "c").exists()  # refused before the run folder is made
