"""`salt train --split holdout`: a reference model trained on the holdout never reads a train window."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from shared.corpus import CorpusSpec
from shared.data import PackedDataset, WindowSplit
from shared.hashing import window_hash
from shared.prepare import prepare
from trainer.cli import app


def test_a_holdout_run_draws_holdout_windows_only(tiny_corpus: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    ds = prepare(CorpusSpec(source=str(tiny_corpus)), tmp_path / "ds", seq_len=32, vocab_size=300, val_fraction=0.2,
                 holdout_fraction=0.3)
    held = PackedDataset(ds.holdout_path())
    drawn: dict[str, list[str]] = {"train": [], "val": []}
    original = WindowSplit.batch

    def batch(self: WindowSplit, indices: np.ndarray | list[int]) -> torch.Tensor:
        rows = original(self, indices)
        drawn[self.name].extend(window_hash(r.numpy()) for r in rows)
        return rows

    monkeypatch.setattr(WindowSplit, "batch", batch)
    out = tmp_path / "reference"
    res = CliRunner().invoke(app, ["train", "--data", str(ds.path), "--split", "holdout", "--out", str(out),
                                   "--preset", "slm-tiny", "--steps", "6", "--batch-size", "4", "--warmup-steps",
                                   "1", "--eval-every", "6", "--eval-windows", "4", "--device", "cpu",
                                   "--no-progress"])
    assert res.exit_code == 0, res.output
    assert len(drawn["train"]) == 6 * 4
    assert set(drawn["train"]) <= set(held.train.hashes)
    assert not set(drawn["train"]) & set(ds.train.hashes)
    assert set(drawn["val"]) <= set(ds.val.hashes)  # evaluated on the dataset's val, as every run
    summary = json.loads((out / "summary.json").read_text())
    assert Path(summary["config"]["data"]) == held.path


def test_the_holdout_of_a_dataset_without_one_is_one_line(tiny_dataset: PackedDataset, tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["train", "--data", str(tiny_dataset.path), "--split", "holdout", "--out",
                                   str(tmp_path / "r"), "--device", "cpu", "--steps", "2", "--warmup-steps", "1"])
    assert res.exit_code == 1
    assert "has no holdout split" in res.output and "--holdout-fraction" in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()
    bad = CliRunner().invoke(app, ["train", "--data", str(tiny_dataset.path), "--split", "val", "--out",
                                   str(tmp_path / "r"), "--device", "cpu", "--steps", "2", "--warmup-steps", "1"])
    assert bad.exit_code == 1 and "unknown split 'val'" in bad.output
