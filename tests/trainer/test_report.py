"""Reports are rebuilt from saved metrics only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shared.cli import app
from shared.data import PackedDataset
from shared.errors import SaltError
from trainer.config import TrainConfig
from trainer.report import load_run, write_report
from trainer.train import read_metrics, train


def test_report_numbers_come_from_the_metrics(tiny_dataset: PackedDataset, tmp_path: Path) -> None:
    runs = []
    for name, seed in (("baseline", 0), ("other", 1)):
        cfg = TrainConfig(data=str(tiny_dataset.path), out=str(tmp_path / name), preset="llm-tiny", steps=6,
                          batch_size=4, warmup_steps=1, eval_every=2, eval_windows=8, ckpt_every=6, seed=seed,
                          device="cpu")
        train(cfg, progress=False)
        runs.append(tmp_path / name)
    result = CliRunner().invoke(app, ["report", *map(str, runs), "--out", str(tmp_path / "rep")])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "rep" / "report.md").read_text()
    assert (tmp_path / "rep" / "curves.png").stat().st_size > 1000
    base_final = [r for r in read_metrics(runs[0]) if r["kind"] == "eval"][-1]
    other = load_run(runs[1])
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    assert f"{base_final['val_loss']:.4f}" in rows["baseline"]
    assert f"{base_final['val_acc']:.2%}" in rows["baseline"]
    reach = other.first_step_at_or_below(base_final["val_loss"])
    assert (str(reach) if reach is not None else "not reached") in rows["other"]
    assert f"{other.final_loss:.4f}" in rows["other"]
    # The baseline reaches its own final loss at its last evaluation at the latest.
    assert load_run(runs[0]).first_step_at_or_below(base_final["val_loss"]) <= 6

    # Labels name the rows (the experiment's run folders carry hashed names); one per run, distinct.
    labelled = write_report(runs, tmp_path / "rep2", labels=["plain", "taught"]).read_text()
    rows = {line.split("|")[1].strip(): line for line in labelled.splitlines() if line.startswith("| ")}
    assert "Baseline: plain." in labelled and f"{other.final_loss:.4f}" in rows["taught"]
    for bad in (["one"], ["same", "same"]):
        with pytest.raises(SaltError, match="labels for"):
            write_report(runs, tmp_path / "rep3", labels=bad)


def test_report_refuses_unfinished_runs(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text(json.dumps({"kind": "train", "step": 1, "loss": 1.0}) + "\n")
    with pytest.raises(SaltError, match="not a finished run"):
        write_report([tmp_path / "run"], tmp_path / "rep")
    result = CliRunner().invoke(app, ["report", str(tmp_path / "missing")])
    assert result.exit_code == 1 and "error:" in result.output
