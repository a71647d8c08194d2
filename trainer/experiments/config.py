"""``ExperimentConfig``: one experiment (data, SLM, LLM budget, modes, seeds), built from the same setting
groups as a training run, and its named presets. Loadable from a flat JSON file."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.config import ConfigError, FlatConfig, check_choices
from shared.device import Precision, resolve_device, resolve_precision
from shared.errors import SaltError
from shared.prepare import PrepareConfig
from trainer.config.choices import MODES, SHORTENABLE_MODES, Diversity
from trainer.config.groups import EvalConfig, KDConfig, OptimConfig

PAIR_MODES: dict[str, str] = {"rho": "reducible_loss", "difference": "difference"}
"""Experiment modes beside the training modes: phase one (as ``salt_ds``: KD from the SLM on a stored
selection) on a two-model selection by this method. ``rho``: the SLM's loss minus that of a reference SLM
trained on the dataset's holdout (RHO-LOSS's irreducible-loss model). ``difference``: MiniPLM's difference
sampling between the SLM and a reference SLM trained for fewer steps (``reference_fraction``)."""
EXPERIMENT_MODES: tuple[str, ...] = (*MODES, *PAIR_MODES)


def _experiment_eval() -> EvalConfig:
    return EvalConfig(eval_every=25)  # curves with more points than a single run's default


@dataclass(frozen=True)
class ExperimentConfig(FlatConfig):
    """One experiment: data, SLM, LLM budget, modes and seeds."""

    root: str = "runs/experiment"
    """Folder for the dataset, the SLMs, the cache and every run. Experiments that share a root share
    whatever they have in common: each SLM and LLM run's folder is named by its settings, so an
    ablation that changes only n_kd reuses the baselines and the SLM of the experiment before it."""
    name: str = ""
    """Sub-folder of ``root`` for this experiment's results (empty: ``root`` itself)."""
    data: PrepareConfig = field(default_factory=PrepareConfig)
    slm_preset: str = "slm"
    """Model preset of the SLM."""
    slm_model: str | None = None
    """A Hugging Face SLM instead of the preset: a config.json (trained here from random init) or a model folder
    (its weights, trained further)."""
    slm_steps: int = 400
    """SLM training steps."""
    llm_preset: str = "llm"
    """Model preset of every LLM run."""
    llm_model: str | None = None
    """A Hugging Face LLM instead of the preset: a config.json (random init) or a model folder."""
    llm_steps: int = 250
    """Steps of every LLM run."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=_experiment_eval)
    kd: KDConfig = field(default_factory=KDConfig)
    modes: tuple[str, ...] = MODES
    """LLM runs: baseline, salt, salt_ds, kd_full, and the two-model selectors rho and difference."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Seeds of every mode."""
    kd_fraction: float = 0.2
    """Phase one as a fraction of the LLM steps (n_kd)."""
    pool_windows: int = 3072
    """Train windows the SLM scores for ``salt_ds`` (a seeded random subset of the train split)."""
    selection_diversity: Diversity = "none"
    """Diversity of the ``salt_ds``, ``rho`` and ``difference`` selections: none, kmeans or dedup."""
    reference_fraction: float = 0.25
    """Steps of the ``difference`` mode's reference SLM as a fraction of ``slm_steps``: the SLM's preset and
    data for fewer steps (an earlier, weaker model of the same family, as MiniPLM's small reference)."""
    short_runs: tuple[str, ...] = ()
    """Extra runs on a shorter budget, as ``mode@fraction`` (e.g. ``salt@0.8``: a ``salt`` run of 80% of
    ``llm_steps`` with its own full learning-rate schedule and phase one of ``kd_fraction`` of its
    steps). Their final loss, against the full baseline's, is the "same quality in fewer steps" test
    for a user who plans the shorter run; ``baseline``, ``salt`` and ``kd_full`` can be shortened."""
    device: str = "auto"
    """auto, cpu or cuda[:N]."""
    precision: Precision = "auto"
    """auto (bf16 autocast where the device runs bf16 natively, fp32 elsewhere), fp32 or bf16; the SLM,
    every LLM run and the selector service use it, and run folders are named by what it resolves to."""

    def __post_init__(self) -> None:
        check_choices(self)
        unknown = set(self.modes) - set(EXPERIMENT_MODES)
        if unknown:
            raise ConfigError(f"unknown mode(s): {', '.join(sorted(unknown))}", f"use {', '.join(EXPERIMENT_MODES)}")
        if "rho" in self.modes and not self.data.holdout_fraction:
            raise ConfigError("mode rho needs a holdout split for its reference SLM",
                              "set holdout_fraction (e.g. 0.1); it makes another dataset, so use a root of its own")
        if not 0.0 < self.reference_fraction < 1.0:
            raise ConfigError(f"reference fraction must be in (0, 1), got {self.reference_fraction}", "use e.g. 0.25")
        if "difference" in self.modes and self.reference_steps >= self.slm_steps:
            raise ConfigError(f"the difference mode's reference SLM ({self.reference_steps} steps) must train for "
                              f"fewer steps than the SLM ({self.slm_steps})", "lower reference_fraction")
        if not self.modes or not self.seeds:
            raise ConfigError("an experiment needs at least one mode and one seed", "set modes and seeds")
        if not 0.0 < self.kd_fraction <= 1.0:
            raise ConfigError(f"kd fraction must be in (0, 1], got {self.kd_fraction}", "use e.g. 0.2")
        if self.slm_steps < 1 or self.llm_steps < 1:
            raise ConfigError("slm_steps and llm_steps must be at least 1", "set positive step counts")
        self.arms  # noqa: B018 (validates short_runs)
        if self.name and (Path(self.name).name != self.name or self.name.startswith(".")):
            raise ConfigError(f"experiment name {self.name!r} must be a plain folder name", "use e.g. nkd-30")

    @property
    def resolved_precision(self) -> str:
        """``fp32`` or ``bf16``: what ``precision`` means on this machine's ``device``."""
        return resolve_precision(self.precision, resolve_device(self.device))

    @property
    def reference_steps(self) -> int:
        """Steps of the ``difference`` mode's reference SLM."""
        return max(1, round(self.reference_fraction * self.slm_steps))

    @property
    def n_kd(self) -> int:
        return self.kd_steps(self.llm_steps)

    @property
    def arms(self) -> list[tuple[str, str, int]]:
        """(label, mode, steps) of every run kind: the modes on the full budget, then the short runs."""
        arms = [(m, m, self.llm_steps) for m in self.modes]
        for label in self.short_runs:
            mode, _, frac = label.partition("@")
            try:
                f = float(frac)
            except ValueError:
                f = -1.0
            if mode not in SHORTENABLE_MODES or not 0.0 < f < 1.0:
                raise ConfigError(f"bad short run {label!r}", f"use mode@fraction with mode "
                                  f"{', '.join(SHORTENABLE_MODES)} and 0 < fraction < 1")
            arms.append((label, mode, max(1, round(f * self.llm_steps))))
        return arms

    def kd_steps(self, steps: int) -> int:
        """Phase-one steps of a run of ``steps`` steps."""
        return max(1, round(self.kd_fraction * steps))

    @property
    def data_dir(self) -> Path:
        """The prepared dataset every run of the root trains on."""
        return Path(self.root) / "data"

    @property
    def out(self) -> Path:
        """Where results.json, results.md and the plots go."""
        return Path(self.root) / self.name if self.name else Path(self.root)

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> ExperimentConfig:
        """Read a JSON config (keys are the flat setting names); ``overrides`` that are not None win."""
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise SaltError(f"cannot read experiment config {p}: {e}", "pass a JSON file of experiment settings") from e
        if not isinstance(data, dict):
            raise SaltError(f"{p} is not a JSON object of settings", "pass a JSON file of experiment settings")
        try:
            return cls.of(**{**data, **{k: v for k, v in overrides.items() if v is not None}})
        except ConfigError as e:
            raise ConfigError(f"{p}: {e}") from e


EXPERIMENT_PRESETS: dict[str, ExperimentConfig] = {
    # Phase one of 40% and a k-means-diverse SALT_DS selection (see docs/results/cpu-small/ablations/);
    # a baseline on 80% of the steps shows what cutting the budget costs without a teacher.
    "cpu-small": ExperimentConfig.of(root="runs/cpu-small", kd_fraction=0.4, selection_diversity="kmeans",
                                     short_runs=("baseline@0.8",)),
    "gpu-mid": ExperimentConfig.of(
        root="runs/gpu-mid", slm_preset="slm-mid", llm_preset="llm-mid", slm_steps=3000, llm_steps=3000,
        batch_size=64, seq_len=256, vocab_size=16384, eval_every=250, pool_windows=65536, seeds=(0,), lr=1e-3,
    ),
}

DEMO_KD: dict[str, Any] = {"slm_steps": 1000, "kd_fraction": 0.8, "kd_labels": "sample", "kd_draws": 16,
                           "kd_until": "auto", "kd_transition": "linear", "kd_transition_steps": 50}
"""The teacher and phase one of the best configuration measured on ``cpu-small`` (docs/results/cpu-small-payback,
``strong-*``): the SLM trained 1,000 steps, 16 sampled labels a position, KD for at most 80% of the steps, ended
earlier by ``--kd-until auto``, then a linear fall of the KD weight over 50 steps."""

DEMO = ExperimentConfig.of(root="runs/demo", modes=("baseline", "salt"), seeds=(0,), selection_diversity="kmeans",
                           **DEMO_KD)
"""The demo's sizes: ``cpu-small``'s data and 250-step LLMs, a baseline and a SALT run in the best configuration
measured (``DEMO_KD``). ``--modes baseline,salt,salt_ds`` adds a SALT_DS run, whose selection is spread over
k-means clusters: plain top scores pick docstring prose on this corpus (docs/results)."""


def preset(name: str, **overrides: Any) -> ExperimentConfig:
    """A named experiment preset, with the ``overrides`` that are not None."""
    if name not in EXPERIMENT_PRESETS:
        raise SaltError(f"unknown experiment preset {name!r}",
                        f"use one of {', '.join(EXPERIMENT_PRESETS)} or --config FILE")
    return EXPERIMENT_PRESETS[name].with_(**{k: v for k, v in overrides.items() if v is not None})
