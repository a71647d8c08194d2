"""The experiment's two-model modes: ``rho`` (reference SLM trained on the holdout) and ``difference``
(reference SLM trained for fewer steps), each a phase one on its own two-model selection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.client import SelectorClient
from shared.config import ConfigError
from shared.data import PackedDataset
from tests.trainer.test_experiment import tiny_experiment
from trainer.experiments.config import ExperimentConfig
from trainer.experiments.run import run_experiment
from trainer.experiments.stages import reference_dir, slm_dir
from trainer.recipe.checkpointing import CKPT_DIR
from trainer.service_process import ServiceProcess


def test_rho_and_difference_train_on_selections_of_two_models(tmp_path: Path) -> None:
    cfg = tiny_experiment(tmp_path, modes=("baseline", "rho", "difference"), holdout_fraction=0.2)
    lines: list[str] = []
    results = run_experiment(cfg, report=lines.append, progress=False)
    assert set(results["modes"]) == {"baseline", "rho", "difference"}
    runs = {r["mode"]: r for r in results["runs"]}
    ds = PackedDataset(cfg.data_dir)
    held = PackedDataset(ds.holdout_path())
    rho_ref, diff_ref = reference_dir(cfg, "rho"), reference_dir(cfg, "difference")
    assert len({rho_ref, diff_ref, slm_dir(cfg)}) == 3
    assert Path(json.loads((rho_ref / "summary.json").read_text())["config"]["data"]) == held.path
    assert json.loads((diff_ref / "summary.json").read_text())["steps"] == cfg.reference_steps == 1
    db = f"sqlite:///{(Path(cfg.root) / 'cache.sqlite').resolve()}"
    with ServiceProcess(slm_dir(cfg) / CKPT_DIR, db) as svc, SelectorClient(svc.url) as client:
        slm_fp = client.model_info()["fingerprint"]
        for mode, method, roles in (("rho", "reducible_loss", ("learner", "reference")),
                                    ("difference", "difference", ("teacher", "reference"))):
            summary = json.loads((Path(runs[mode]["run"]) / "summary.json").read_text())
            assert Path(runs[mode]["run"]).name.startswith(f"{mode}-seed0-")
            assert summary["config"]["mode"] == "salt_ds"
            sel = client.selection(summary["config"]["selection"])
            assert sel["method"] == method and sel["count"] == cfg.n_kd * cfg.optim.batch_size
            models = sel["models"]
            assert set(models) == set(roles) and models[roles[0]].split(":")[0] == slm_fp
            assert models[roles[1]].split(":")[0] != slm_fp  # the reference SLM, not the SLM again
            assert set(sel["hashes"]) <= set(ds.train.hashes)
            # Both models scored the pool, storing the SLM's labels: phase one asked for no SLM forward.
            assert runs[mode]["slm_forwards"] == 0 and runs[mode]["cache_misses"] == 0
            assert summary["service"]["requests"] > 0
    assert any("by reducible_loss of learner and reference" in ln for ln in lines)

    # A second call reuses the reference SLMs, the selections (no reference service started) and the runs.
    again: list[str] = []
    second = run_experiment(cfg, report=again.append, progress=False)
    assert [r["final_loss"] for r in second["runs"]] == [r["final_loss"] for r in results["runs"]]
    assert any(ln.startswith("reusing rho selection") for ln in again)
    assert not any("reference SLM" in ln and "scoring" in ln for ln in again)
    assert sum(ln.startswith("reusing finished run") for ln in again) == 6  # the SLM, two references, three LLM runs


def test_pair_modes_are_checked() -> None:
    with pytest.raises(ConfigError, match="mode rho needs a holdout split"):
        ExperimentConfig.of(modes=("baseline", "rho"))
    ExperimentConfig.of(modes=("rho",), holdout_fraction=0.1)
    with pytest.raises(ConfigError, match="fewer steps than the SLM"):
        ExperimentConfig.of(modes=("difference",), slm_steps=4, reference_fraction=0.9)
    with pytest.raises(ConfigError, match="reference fraction"):
        ExperimentConfig.of(modes=("difference",), reference_fraction=1.0)
