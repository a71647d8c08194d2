"""The experiment harness on a tiny config: results.json is well formed and comes from the metrics."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from shared.errors import SaltError
from tests.conftest import make_corpus
from trainer.cli import app
from trainer.experiments.config import DEMO, ExperimentConfig
from trainer.experiments.results import recompute
from trainer.experiments.run import run_experiment
from trainer.recipe.metrics import read_metrics


def tiny_experiment(tmp_path: Path, **kw: object) -> ExperimentConfig:
    corpus = make_corpus(tmp_path / "corpus", n_docs=30)
    base = dict(root=str(tmp_path / "exp"), source=str(corpus), seq_len=32, vocab_size=300, slm_preset="slm-tiny",
                slm_steps=4, llm_preset="llm-tiny", llm_steps=10, batch_size=4, eval_every=2, eval_windows=8,
                modes=("baseline", "salt", "salt_ds"), seeds=(0,), kd_k=8, pool_windows=40, device="cpu")
    base.update(kw)
    return ExperimentConfig.of(**base)  # type: ignore[arg-type]


def test_results_come_from_the_metrics_files(tmp_path: Path) -> None:
    cfg = tiny_experiment(tmp_path)
    run_experiment(cfg, progress=False)
    root = Path(cfg.root)
    results = json.loads((root / "results.json").read_text())
    assert {(r["mode"], r["seed"]) for r in results["runs"]} == {("baseline", 0), ("salt", 0), ("salt_ds", 0)}
    [record] = (root / "selections").glob("*.json")
    selection = json.loads(record.read_text())
    assert selection["count"] == cfg.n_kd * cfg.optim.batch_size and selection["pool"] == 40
    assert_rows_from_metrics(results["runs"])
    base = next(r for r in results["runs"] if r["mode"] == "baseline")
    assert base["reach_step"] is not None and base["reach_step"] <= 10
    salt = next(r for r in results["runs"] if r["mode"] == "salt")
    assert salt["teacher_s"] > 0 and salt["slm_forwards"] > 0
    assert results["modes"]["salt"]["final_loss"]["mean"] == salt["final_loss"]
    assert results["modes"]["salt"]["n"] == 1
    assert salt["kd_end_step"] == cfg.n_kd and salt["kd_end_from"] == "run"  # the summary records the end it used
    assert_wall_clock(results, base, salt)
    assert_recomputed_from_committed_files(root, results, tmp_path / "committed")
    text = (root / "results.md").read_text()
    assert f"| {salt['final_loss']:.4f} |" in text and "±" not in text.split("|---")[1]  # one seed: no spread
    assert (root / "val_loss.png").stat().st_size > 1000 and (root / "val_acc.png").stat().st_size > 1000

    # A second call reuses every finished stage and gives the same numbers.
    again = run_experiment(cfg, progress=False)
    assert [r["final_loss"] for r in again["runs"]] == [r["final_loss"] for r in results["runs"]]

    # An ablation in the same root reuses the baseline and the SLM, and trains only what changed.
    base_run = Path(base["run"])
    before = (base_run / "summary.json").stat().st_mtime_ns
    other = cfg.with_(name="nkd50", kd_fraction=0.5, modes=("baseline", "salt"), short_runs=("salt@0.6",))
    ablation = run_experiment(other, progress=False)
    short = next(r for r in ablation["runs"] if r["mode"] == "salt@0.6")
    assert short["steps"] == 6 and ablation["modes"]["salt@0.6"]["steps"] == 6
    assert json.loads((Path(short["run"]) / "summary.json").read_text())["config"]["n_kd"] == 3
    short_evals = [r for r in read_metrics(short["run"]) if r["kind"] == "eval"]
    assert short["final_loss"] == short_evals[-1]["val_loss"] and short_evals[-1]["step"] == 6
    if short["reach_step"] is not None:  # reach is counted in the full baseline's steps
        assert short["reach_fraction"] == short["reach_step"] / 10
    assert (root / "nkd50" / "results.json").is_file() and (root / "nkd50" / "val_loss.png").is_file()
    assert ablation["slm"]["run"] == results["slm"]["run"]
    base2 = next(r for r in ablation["runs"] if r["mode"] == "baseline")
    salt2 = next(r for r in ablation["runs"] if r["mode"] == "salt")
    assert base2["run"] == base["run"] and (base_run / "summary.json").stat().st_mtime_ns == before
    assert salt2["run"] != salt["run"] and salt2["steps"] == 10
    assert json.loads((Path(salt2["run"]) / "summary.json").read_text())["config"]["n_kd"] == 5

    # `salt ablations` puts both experiments in one table, each mode against its own baseline.
    out = tmp_path / "ablations.md"
    res = CliRunner().invoke(app, ["ablations", str(root), str(root / "nkd50" / "results.json"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    table = out.read_text()
    assert table == res.output
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == 6  # baseline, salt, salt_ds; then baseline, salt, salt@0.6
    assert rows[-2].startswith("| nkd50 |") and "| 50% |" in rows[-2]
    assert f"{salt2['final_loss'] - base2['final_loss']:+.4f}" in rows[-2]
    assert "| salt@0.6 |" in rows[-1]
    bad = CliRunner().invoke(app, ["ablations", str(tmp_path / "nowhere")])
    assert bad.exit_code == 1 and "cannot read experiment results" in bad.output


def assert_rows_from_metrics(rows: list[dict[str, Any]]) -> None:
    """Final and 70% figures of every run (10 steps, evaluated every 2) against its metrics file."""
    for row in rows:
        evals = [r for r in read_metrics(row["run"]) if r["kind"] == "eval"]
        assert row["final_loss"] == evals[-1]["val_loss"]
        assert row["final_acc"] == evals[-1]["val_acc"]
        # 70% of 10 steps is step 7, halfway between the evaluations at steps 6 and 8.
        around = [e for e in evals if e["step"] in (6, 8)]
        assert row["step_70"] == 7.0
        assert row["loss_70"] == pytest.approx((around[0]["val_loss"] + around[1]["val_loss"]) / 2)
        assert row["acc_70"] == pytest.approx((around[0]["val_acc"] + around[1]["val_acc"]) / 2)


def assert_wall_clock(results: dict[str, Any], base: dict[str, Any], salt: dict[str, Any]) -> None:
    """The baseline's own time to its final loss; a KD run's LLM, teacher and SLM-share parts and its ratio."""
    assert base["time_ratio"] == 1.0 and base["kd_end_step"] is None
    assert base["time_to_reach"]["slm_share_s"] == 0.0 and base["time_to_reach"]["teacher_s"] == 0.0
    # Two KD runs (salt, salt_ds) share the SLM's training time evenly.
    assert results["slm"]["kd_runs"] == 2
    assert results["slm"]["share_s"] == pytest.approx(results["slm"]["train_s"] / 2)
    if salt["reach_step"] is not None:
        t = salt["time_to_reach"]
        assert t["slm_share_s"] == results["slm"]["share_s"] and t["teacher_s"] > 0
        assert t["total_s"] == pytest.approx(t["llm_s"] + t["teacher_s"] + t["slm_share_s"])
        assert salt["time_ratio"] == pytest.approx(t["total_s"] / base["time_to_reach_s"])


def assert_recomputed_from_committed_files(root: Path, results: dict[str, Any], folder: Path) -> None:
    """results.json and curves.json alone (no run folder beside them) give the same results.md, and the
    same figures as the ones computed from the runs."""
    curves = json.loads((root / "curves.json").read_text())
    assert curves["columns"] == ["step", "val_loss", "val_acc", "llm_s"]
    assert {(c["mode"], c["seed"]) for c in curves["runs"]} == {(r["mode"], r["seed"]) for r in results["runs"]}
    for c in curves["runs"]:
        evals = [r for r in read_metrics(c["run"]) if r["kind"] == "eval"]
        assert [e[:3] for e in c["evals"]] == [[e["step"], e["val_loss"], e["val_acc"]] for e in evals]
        train = [r for r in read_metrics(c["run"]) if r["kind"] == "train"]
        assert c["evals"][-1][3] == pytest.approx(sum(r["step_s"] - r["data_wait_s"] for r in train))
    folder.mkdir()
    for name in ("results.json", "curves.json"):
        shutil.copy(root / name, folder / name)
    res = CliRunner().invoke(app, ["report", "--from-results", str(folder)])
    assert res.exit_code == 0, res.output
    assert (folder / "results.md").read_text() == (root / "results.md").read_text()
    assert (folder / "val_loss.png").stat().st_size > 1000
    again, _ = recompute(folder)
    assert json.loads(json.dumps(again["runs"])) == results["runs"]
    assert json.loads(json.dumps(again["modes"])) == results["modes"]
    (folder / "curves.json").unlink()
    res = CliRunner().invoke(app, ["report", "--from-results", str(folder)])
    assert res.exit_code == 1 and "curves.json" in res.output


def test_config_file_and_errors(tmp_path: Path) -> None:
    good = tmp_path / "exp.json"
    good.write_text(json.dumps({"llm_steps": 100, "seeds": [1, 2], "modes": ["baseline", "kd_full"]}))
    cfg = ExperimentConfig.from_file(good, root=str(tmp_path / "x"))
    assert cfg.seeds == (1, 2) and cfg.n_kd == 20 and cfg.root == str(tmp_path / "x")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"llm_stepz": 100}))
    with pytest.raises(SaltError, match="unknown setting"):
        ExperimentConfig.from_file(bad)
    with pytest.raises(SaltError, match="unknown mode"):
        ExperimentConfig.of(modes=("baseline", "magic"))
    for short in ("salt_ds@0.5", "salt@1.5", "salt", "salt@x"):
        with pytest.raises(SaltError, match="bad short run"):
            ExperimentConfig.of(short_runs=(short,))
    for name in ("../escape", "a/b", ".hidden"):
        with pytest.raises(SaltError, match="plain folder name"):
            ExperimentConfig.of(name=name)
    with pytest.raises(SaltError, match="unknown precision"):
        ExperimentConfig.of(precision="fp8")


def test_the_demo_runs_the_best_configuration_whose_results_are_committed() -> None:
    committed = ExperimentConfig.from_file(Path(__file__).parents[2] / "docs/results/cpu-small-payback/strong-250.json")
    same_runs = {"root": DEMO.root, "name": DEMO.name, "modes": DEMO.modes, "seeds": DEMO.seeds,
                 "selection_diversity": DEMO.selection_diversity}
    assert committed.with_(**same_runs) == DEMO
    assert DEMO.kd.kd_until == "auto" and DEMO.kd.kd_labels == "sample" and DEMO.modes == ("baseline", "salt")


def test_run_folders_are_named_by_the_resolved_precision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from shared import device as device_mod
    from trainer.experiments.stages import slm_dir

    cfg = ExperimentConfig.of(root=str(tmp_path), device="cpu")
    monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda: True)
    assert cfg.resolved_precision == "bf16"
    auto_bf16 = slm_dir(cfg)
    assert slm_dir(cfg.with_(precision="bf16")) == auto_bf16  # the same runs: reused
    monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda: False)
    assert cfg.resolved_precision == "fp32"
    assert slm_dir(cfg) == slm_dir(cfg.with_(precision="fp32")) != auto_bf16  # other numerics: other runs


def _children(pid: int, needle: bytes) -> list[int]:
    """Processes whose parent is ``pid`` and whose command line holds ``needle`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and needle in cmdline:
            found.append(int(entry.name))
    return found


def test_sigterm_stops_the_service_it_started(tmp_path: Path) -> None:
    cfg = tiny_experiment(tmp_path, modes=("salt",), llm_steps=2000)
    config = tmp_path / "exp.json"
    config.write_text(json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in cfg.to_dict().items()}))
    proc = subprocess.Popen([sys.executable, "-c", "from trainer.cli import main; main()", "experiment",
                             "--config", str(config), "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        service: list[int] = []
        while not service and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
            service = _children(proc.pid, b"selector_service")
        assert service, "the experiment never started its selector service"
        while not list(Path(cfg.root).glob("runs/salt-*/metrics.jsonl")) and time.monotonic() < deadline:
            time.sleep(0.1)  # the service is up and the LLM is training against it
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
        gone = time.monotonic() + 15
        while Path(f"/proc/{service[0]}").exists() and time.monotonic() < gone:
            time.sleep(0.1)
        assert not Path(f"/proc/{service[0]}").exists(), "the selector service outlived the experiment"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_experiment_with_hugging_face_slm_and_llm(tmp_path: Path) -> None:
    """The harness with a Hugging Face SLM (trained from a config, then served) and a Hugging Face LLM."""
    from tests.hf_models import tiny_config

    cfg = tiny_experiment(tmp_path, modes=("baseline", "salt"), slm_steps=3, llm_steps=6)
    # The configs need the dataset's vocabulary: prepare it first (the harness reuses it).
    from trainer.experiments.stages import ensure_dataset

    ds = ensure_dataset(cfg, lambda _: None)
    for name, arch in (("slm", "qwen2"), ("llm", "llama")):
        tiny_config(arch, ds.vocab_size, padding_rows=8 if arch == "qwen2" else 0).save_pretrained(str(tmp_path / name))
    cfg = cfg.with_(slm_model=str(tmp_path / "slm" / "config.json"), llm_model=str(tmp_path / "llm" / "config.json"))
    results = run_experiment(cfg, progress=False)
    assert {r["mode"] for r in results["runs"]} == {"baseline", "salt"}
    salt = next(r for r in results["runs"] if r["mode"] == "salt")
    assert salt["slm_forwards"] > 0 and Path(results["slm"]["run"]).name.startswith("slm-3-")
    assert json.loads((Path(salt["run"]) / "summary.json").read_text())["preset"] == "llm"  # the config's folder
    assert "`llm`" in (Path(cfg.root) / "results.md").read_text()
