"""The ``salt`` commands derive their options from the config classes: every setting is reachable, by the
option names the commands have always had, and reaches the config with the value given."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from shared.config import FlatConfig, choices
from shared.prepare import PrepareConfig
from trainer.cli import app
from trainer.config import TrainConfig
from trainer.experiments.config import ExperimentConfig

runner = CliRunner()

TRAIN_OPTIONS = (
    "data out preset mode steps batch-size grad-accum lr min-lr-ratio warmup-steps weight-decay grad-clip seed "
    "eval-every eval-windows ckpt-every device precision block-size kd-weight n-kd kd-transition "
    "kd-transition-steps kd-k kd-temperature service-url selection fault-policy retry-deadline-s prefetch-depth "
    "resume overwrite progress verbose"
).split()
"""``salt train``'s options before they were derived from TrainConfig: none may go."""
PREPARE_OPTIONS = ("out source glob text-field max-docs seq-len vocab-size tokenizer val-fraction dtype "
                   "overwrite").split()
DEMO_OPTIONS = ("root source slm-steps llm-steps slm-preset llm-preset kd-weight kd-fraction pool-windows modes "
                "max-docs seed device progress verbose").split()


def options_of(command: str) -> set[str]:
    group = typer.main.get_command(app)
    cmd = group.commands[command]  # type: ignore[attr-defined]
    return {opt[2:] for p in cmd.params for opt in p.opts if opt.startswith("--")}


@pytest.mark.parametrize(("command", "cls", "old"), [("train", TrainConfig, TRAIN_OPTIONS),
                                                     ("prepare", PrepareConfig, PREPARE_OPTIONS)])
def test_every_setting_is_an_option(command: str, cls: type[FlatConfig], old: list[str]) -> None:
    opts = options_of(command)
    assert {s.name.replace("_", "-") for s in cls.settings()} <= opts
    assert set(old) <= opts


def test_demo_keeps_its_options() -> None:
    assert set(DEMO_OPTIONS) <= options_of("demo")


def _other_value(name: str, annotation: Any, default: Any) -> Any:
    """A valid value other than the default, for a setting of TrainConfig."""
    special = {"data": "some/data", "out": "some/run", "mode": "salt_ds", "preset": "llm-tiny", "device": "cpu",
               "service_url": "http://a:1,http://b:2", "selection": "sel", "api_key": "s3cr3t-value", "n_kd": 7,
               "max_docs": 5, "model": "some/config.json", "labels_from": "some/export",
               "block_size": 64, "warmup_steps": 3, "steps": 90, "kd_transition": "wsd"}
    if name in special:
        return special[name]
    allowed = choices(annotation)
    if allowed is not None:
        return next(v for v in allowed if v != default)
    if isinstance(default, bool):
        return not default
    if isinstance(default, int):
        return default + 2
    if isinstance(default, float):
        return round(default / 2 + 0.01, 4) if default < 1 else default + 1.5
    raise AssertionError(f"no test value for {name}")


def test_every_train_option_reaches_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[TrainConfig] = []

    def fake_train(cfg: TrainConfig, **kw: Any) -> dict[str, Any]:
        seen.append(cfg)
        return {"val_loss": 1.0, "val_acc": 0.5, "checkpoint": "c", "service": None}

    monkeypatch.setattr("trainer.recipe.train", fake_train)
    # --block-size sets a preset's context: it is checked with the preset below, the rest with a --model.
    wanted = {s.name: _other_value(s.name, s.annotation, s.default) for s in TrainConfig.settings()
              if s.name != "block_size"}
    for extra in ({}, {"block_size": 64, "model": None}):
        run = {k: v for k, v in {**wanted, **extra}.items() if v is not None}
        args = ["train"]
        for name, value in run.items():
            args += [f"--{name.replace('_', '-')}", str(value)]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        cfg = seen[-1]
        for name, value in {**wanted, **extra}.items():
            assert cfg.get(name) == value, name
        assert "s3cr3t" not in json.dumps(cfg.to_dict())  # the API key is never saved


def test_bad_setting_is_one_error_line(monkeypatch: pytest.MonkeyPatch) -> None:
    result = runner.invoke(app, ["train", "--mode", "salt"])  # a KD mode without a service
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "error: mode salt needs a selector service: pass its URL (--service-url) or a label export (--labels-from)"]


def test_every_experiment_setting_is_reachable_from_a_config_file(tmp_path: Path) -> None:
    base = ExperimentConfig()
    values: dict[str, Any] = {}
    for s in ExperimentConfig.settings():
        if s.name in ("modes", "seeds", "short_runs"):
            continue
        if s.name in ("root", "name", "source", "glob", "text_field", "tokenizer", "device", "slm_preset",
                      "llm_preset", "slm_model", "llm_model"):
            values[s.name] = {"root": str(tmp_path / "r"), "name": "n1", "device": "cpu", "slm_preset": "slm-tiny",
                              "llm_preset": "llm-tiny"}.get(s.name, f"x{s.name}")
        else:
            values[s.name] = _other_value(s.name, s.annotation, base.get(s.name))
    values |= {"modes": ["baseline", "salt"], "seeds": [3, 4], "short_runs": ["salt@0.5"], "kd_fraction": 0.3,
               "warmup_steps": 5}
    path = tmp_path / "exp.json"
    path.write_text(json.dumps(values))
    cfg = ExperimentConfig.from_file(path)
    got = cfg.to_dict()
    assert set(got) == {s.name for s in ExperimentConfig.settings()}
    for name, value in values.items():
        assert got[name] == (tuple(value) if isinstance(value, list) else value), name
