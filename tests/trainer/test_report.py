"""Reports are rebuilt from saved metrics only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shared.data import PackedDataset
from shared.errors import SaltError
from trainer.cli import app
from trainer.config import TrainConfig
from trainer.experiments.report import load_run, write_report
from trainer.recipe import train
from trainer.recipe.metrics import read_metrics


def test_report_numbers_come_from_the_metrics(tiny_dataset: PackedDataset, tmp_path: Path) -> None:
    runs = []
    for name, seed in (("baseline", 0), ("other", 1)):
        cfg = TrainConfig.of(data=str(tiny_dataset.path), out=str(tmp_path / name), preset="llm-tiny", steps=6,
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
    reach = other.reach(base_final["val_loss"])
    assert (f"| {reach:.1f} |" if reach is not None else "| never |") in rows["other"]
    assert f"{other.final_loss:.4f}" in rows["other"]
    # The baseline reaches its own final loss at its last evaluation at the latest, in its own time.
    base = load_run(runs[0])
    own = base.reach(base_final["val_loss"])
    assert own is not None and own <= 6
    assert f"| {base.time_to(own, 0.0)['total_s']:,.0f} s | 1.00 |" in rows["baseline"]
    assert "| — |" in rows["baseline"].split(f"{base_final['val_acc']:.2%}")[1][:6]  # no KD end step

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


def test_results_name_the_label_kind() -> None:
    from trainer.experiments.tables import _labels

    assert _labels({"kd_k": 32}) == "k = 32"  # results written before the kind existed
    assert _labels({"kd_labels": "topk", "kd_k": 8, "kd_draws": 64}) == "k = 8"
    assert _labels({"kd_labels": "sample", "kd_k": 32, "kd_draws": 64}) == "sampled labels of 64 draws"
