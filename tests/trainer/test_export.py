"""``salt export``: a selection's labels and scores as safetensors shards; a salt_ds run trained from them
without a service gives the same losses as through it; an interrupted export resumes; bad exports refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file
from typer.testing import CliRunner

from shared.client import SelectorClient
from shared.data import PackedDataset
from shared.errors import SaltError
from shared.hashing import window_hash
from tests.shared.test_client_by_hash import WRAPPING, TorchOps
from trainer.cli import app
from trainer.config import TrainConfig
from trainer.export import MANIFEST, ExportedLabels
from trainer.recipe import train
from trainer.recipe.metrics import read_metrics
from trainer.service_process import ServiceProcess

N_KD, BATCH, K = 3, 4, 8


def _losses(out: Path) -> list[tuple[float, float | None]]:
    return [(r["loss"], r["kd"]) for r in read_metrics(out) if r["kind"] == "train"]


def test_an_exported_selection_trains_salt_ds_without_the_service(
    tiny_dataset: PackedDataset, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'cache.sqlite'}"
    export = tmp_path / "export"
    with ServiceProcess(tiny_checkpoint, db) as svc, SelectorClient(svc.url) as client:
        pool = client.register_pool(tiny_dataset)
        client.wait_job(client.start_job(pool)["id"], poll_s=0.1, timeout_s=60)
        sel = client.create_selection(pool, "salt_ds", count=N_KD * BATCH)["id"]
        result = CliRunner().invoke(app, ["export", "--data", str(tiny_dataset.path), "--service-url", svc.url,
                                          "--selection", sel, "--kd-k", str(K), "--shard-windows", "5",
                                          "--out", str(export), "--no-progress"])
        assert result.exit_code == 0, result.output
        cfg = TrainConfig.of(data=str(tiny_dataset.path), out=str(tmp_path / "served"), preset="llm-tiny",
                             mode="salt_ds", steps=5, n_kd=N_KD, batch_size=BATCH, warmup_steps=1, eval_every=5,
                             eval_windows=8, ckpt_every=5, device="cpu", service_url=svc.url, selection=sel, kd_k=K)
        train(cfg, progress=False)
        hashes = client.selection(sel)["hashes"]
        windows = np.stack([tiny_dataset.train.windows[i] for i in
                            [tiny_dataset.train.hashes.index(h) for h in hashes]]).astype(np.int64)
        served = client.soft_labels(windows, k=K)
        smaller = client.soft_labels(windows, k=3)

    # The folder alone (the service is gone): the manifest, shards of plain tensors any framework reads.
    manifest = json.loads((export / MANIFEST).read_text())
    assert manifest["count"] == N_KD * BATCH and manifest["selection"] == sel and manifest["k"] == K
    assert [s["count"] for s in manifest["shards"]] == [5, 5, 2]
    shard = load_file(str(export / "labels-00000.safetensors"))
    assert [bytes(h).hex() for h in shard["hashes"]] == hashes[:5]
    assert shard["ids"].shape == (5, tiny_dataset.seq_len, K) and shard["logprobs"].dtype == np.float16
    assert np.array_equal(shard["ids"], served.ids[:5].numpy())
    assert shard["embedding"].shape[0] == 5 and np.isfinite(shard["mean_loss"]).all()

    # Trained from the export: the same losses, step for step.
    from_export = cfg.with_(out=str(tmp_path / "exported"), service_url=None, labels_from=str(export))
    summary = train(from_export, progress=False)
    assert _losses(tmp_path / "exported") == _losses(tmp_path / "served")
    assert summary["service"]["requests"] == N_KD

    # A smaller k from the export: the ids cut off join the tail, as the service computes it.
    with TorchOps() as ops:  # read on the prefetch thread, as the service's answers are: no torch op
        got = ExportedLabels(export).soft_labels(windows, k=3)
    assert ops.names <= WRAPPING, sorted(ops.names - WRAPPING)
    assert torch.equal(got.ids, smaller.ids)
    torch.testing.assert_close(got.tail, smaller.tail, atol=2e-2, rtol=1e-2)


def test_an_interrupted_export_resumes_and_bad_exports_are_refused(
    tiny_dataset: PackedDataset, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    from trainer.export import export_labels

    out = tmp_path / "export"
    with ServiceProcess(tiny_checkpoint, f"sqlite:///{tmp_path / 'c.sqlite'}") as svc, \
            SelectorClient(svc.url) as client:
        export_labels(client, tiny_dataset, out, split="val", k=4, shard_windows=4)
        first = {f.name: f.read_bytes() for f in out.iterdir()}
        (out / MANIFEST).unlink()  # as if stopped before the end
        (out / "labels-00001.safetensors").unlink()
        export_labels(client, tiny_dataset, out, split="val", k=4, shard_windows=4)
        assert {f.name: f.read_bytes() for f in out.iterdir()} == first

    val = ExportedLabels(out)
    ds, window = tiny_dataset, np.asarray(tiny_dataset.val.windows[:1], dtype=np.int64)
    assert val.soft_labels(window, k=4).hashes == [window_hash(window[0])]
    base = TrainConfig.of(data=str(ds.path), out=str(tmp_path / "r"), preset="llm-tiny", mode="salt", steps=2,
                          n_kd=1, batch_size=2, warmup_steps=0, device="cpu", labels_from=str(out), kd_k=4)
    with pytest.raises(SaltError, match=r"temperature 1\.0, the run asks 2\.0"):
        train(base.with_(kd_temperature=2.0), progress=False)
    with pytest.raises(SaltError, match="kd_k 8 is above"):
        train(base.with_(kd_k=8), progress=False)
    (out / MANIFEST).unlink()
    with pytest.raises(SaltError, match="not a finished label export"):
        train(base, progress=False)


def test_sampled_labels_are_refused_from_an_export(tiny_dataset: PackedDataset, tmp_path: Path) -> None:
    cfg = TrainConfig.of(data=str(tiny_dataset.path), out=str(tmp_path / "run"), mode="salt", steps=4, warmup_steps=1,
                         labels_from=str(tmp_path / "export"), kd_labels="sample", device="cpu")
    with pytest.raises(SaltError, match="export holds top-k labels"):
        train(cfg, progress=False)


def test_kd_until_auto_is_refused_from_an_export(tiny_dataset: PackedDataset, tmp_path: Path) -> None:
    cfg = TrainConfig.of(data=str(tiny_dataset.path), out=str(tmp_path / "run"), mode="salt", steps=4, warmup_steps=1,
                         labels_from=str(tmp_path / "export"), kd_until="auto", device="cpu")
    with pytest.raises(SaltError, match="kd-until auto compares"):
        train(cfg, progress=False)
    assert not (tmp_path / "run").exists()
