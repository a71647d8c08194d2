"""Phase one on a two-model selection: two services (one SLM each) over one PostgreSQL database score one pool with
`salt score`, `salt select` makes a reducible_loss selection of both, and `salt_ds` trains on exactly its
windows with every label already in the cache (zero SLM forward passes)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from shared.checkpoint import save_model
from shared.client import SelectorClient
from shared.data import PackedDataset
from shared.errors import SaltError
from shared.model import GPT, GPTConfig
from tests.trainer.recorders import record_asked_windows
from trainer.cli import app
from trainer.cli.service import parse_models
from trainer.config import TrainConfig
from trainer.recipe import train
from trainer.service_process import ServiceProcess
from trainer.teacher import selection_indices


def test_salt_ds_trains_on_a_reducible_loss_selection_of_two_services(
    tiny_dataset: PackedDataset, tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg_url: str
) -> None:
    torch.manual_seed(1)
    tok = tiny_dataset.tokenizer()
    reference = tmp_path / "reference"
    save_model(reference, GPT(GPTConfig.from_preset("slm-tiny", vocab_size=tok.get_vocab_size(), block_size=64)), tok)
    db = pg_url  # one PostgreSQL database, as replicas of two models share in production
    n_kd, batch = 2, 4
    runner = CliRunner()
    with ServiceProcess(tiny_checkpoint, db) as a, ServiceProcess(reference, db) as b, \
            SelectorClient(a.url) as ca, SelectorClient(b.url) as cb:
        fp_l, fp_r = ca.model_info()["fingerprint"], cb.model_info()["fingerprint"]
        out = runner.invoke(app, ["score", "--data", str(tiny_dataset.path), "--service-url", a.url,
                                  "--service-url", b.url, "--no-progress"])
        assert out.exit_code == 0, out.output
        pools = re.findall(r"pool (\w+): (\d+) of (\d+) windows scored by model (\w+)", out.output)
        n = str(len(tiny_dataset.train))
        assert [(p[1], p[2], p[3]) for p in pools] == [(n, n, fp_l), (n, n, fp_r)] and pools[0][0] == pools[1][0]
        pid = pools[0][0]
        out = runner.invoke(app, ["select", "--pool", pid, "--service-url", a.url, "--method", "reducible_loss",
                                  "--count", str(n_kd * batch), "--model", f"learner={fp_l}",
                                  "--model", f"reference={fp_r}"])
        assert out.exit_code == 0, out.output
        sid = re.findall(r"selection (\w+): ", out.output)[0]
        selected = set(ca.selection(sid)["hashes"])

        asked = record_asked_windows(monkeypatch)
        # The reference teaches here: a two-model selection names its own models, so the served SLM need
        # not be the selection's first one. Its labels at the default k were stored by its scoring job.
        cfg = TrainConfig.of(data=str(tiny_dataset.path), out=str(tmp_path / "run"), preset="llm-tiny",
                             mode="salt_ds", steps=4, n_kd=n_kd, batch_size=batch, warmup_steps=1, eval_every=4,
                             eval_windows=8, ckpt_every=4, device="cpu", service_url=b.url, selection=sid)
        summary = train(cfg, progress=False)
    assert sorted(asked) == sorted(selected)
    assert summary["service"]["slm_forward_passes"] == 0 and summary["service"]["cache_misses"] == 0


def test_a_one_model_selection_by_another_slm_is_still_refused(tiny_dataset: PackedDataset) -> None:
    class Fake:
        def __init__(self, record: dict[str, object]) -> None:
            self.record = record

        def selection(self, _: str) -> dict[str, object]:
            return self.record

    hashes = list(tiny_dataset.train.hashes[:3])
    record = {"model_fingerprint": "a", "dataset_fingerprint": tiny_dataset.fingerprint,
              "tokenizer_hash": tiny_dataset.tokenizer_hash, "hashes": hashes, "models": {}}
    with pytest.raises(SaltError, match="another SLM"):
        selection_indices(Fake(record), "s", tiny_dataset, {"fingerprint": "b"})  # type: ignore[arg-type]
    two = record | {"models": {"learner": "a:fp32", "reference": "c:fp32"}}
    got = selection_indices(Fake(two), "s", tiny_dataset, {"fingerprint": "b"})  # type: ignore[arg-type]
    assert got.tolist() == [tiny_dataset.train.hashes.index(h) for h in hashes]


@pytest.mark.parametrize("pairs", [["learner"], ["learner=a", "learner=b"], ["=a"], ["learner="]])
def test_model_options_are_checked(pairs: list[str]) -> None:
    with pytest.raises(SaltError, match="ROLE=FINGERPRINT"):
        parse_models(pairs)
    assert parse_models(["learner=a", "reference=b"]) == {"learner": "a", "reference": "b"}
