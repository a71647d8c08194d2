"""``TrainConfig``: everything that decides a training run, saved with every checkpoint."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.config import ConfigError, FlatConfig, check_choices
from shared.device import Precision
from trainer.config.choices import KD_MODES, Mode, Parallel
from trainer.config.groups import EvalConfig, KDConfig, ModelConfig, OptimConfig, ServiceConfig

RESUMABLE_CHANGES = frozenset(
    {"out", "data", "eval_every", "ckpt_every", "device", "service_url", "fault_policy", "retry_deadline_s",
     "prefetch_depth", "labels_from"}
)
"""Settings that may differ between a run and its resumption without changing its trajectory."""


@dataclass(frozen=True)
class TrainConfig(FlatConfig):
    """A training run: what it trains on, for how long, and its setting groups."""

    data: str = "data/stdlib"
    """Prepared dataset folder (``salt prepare``)."""
    out: str = "runs/baseline"
    """Run folder (metrics, checkpoint, summary)."""
    mode: Mode = "baseline"
    """Training mode: baseline, salt, salt_ds or kd_full."""
    steps: int = 300
    """Optimizer steps."""
    seed: int = 0
    """Seeds model initialization and data order."""
    device: str = "auto"
    """auto (CUDA when present), cpu or cuda[:N]."""
    precision: Precision = "auto"
    """auto (bf16 autocast where the device runs bf16 natively: a recent GPU, or a CPU with AVX512-BF16 or
    AMX; fp32 otherwise), fp32 or bf16."""
    parallel: Parallel = "ddp"
    """Under torchrun: ddp (a full copy of the student on each process) or fsdp (the student sharded over
    them, for one too large for a device)."""
    n_kd: int | None = None
    """Phase-one steps (default: 20% of the run; kd_full: the whole run)."""
    selection: str | None = None
    """Stored selection id (mode salt_ds): phase one draws from its windows. Any method's selection
    (``salt select --method``): SALT_DS, a loss band, random, or two models' reducible loss, difference
    sampling or conditional loss reduction."""
    arch: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    kd: KDConfig = field(default_factory=KDConfig)
    service: ServiceConfig = field(default_factory=ServiceConfig)

    def __post_init__(self) -> None:
        check_choices(self)
        if self.steps < 1:
            raise ConfigError(f"steps must be at least 1, got {self.steps}")
        if self.optim.warmup_steps > self.steps:
            raise ConfigError(f"warmup_steps must be in [0, steps={self.steps}], got {self.optim.warmup_steps}")
        if self.n_kd is not None and not 0 <= self.n_kd <= self.steps:
            raise ConfigError(f"n_kd ({self.n_kd}) must be within the run's {self.steps} steps")
        if self.mode in KD_MODES and not self.service.urls and not self.service.labels_from:
            raise ConfigError(f"mode {self.mode} needs a selector service: pass its URL (--service-url) or a "
                              "label export (--labels-from)")
        if self.mode == "salt_ds" and not self.selection:
            raise ConfigError("mode salt_ds needs a stored selection: pass its id (--selection)")
        if self.selection and self.mode != "salt_ds":
            raise ConfigError(f"mode {self.mode} does not draw from a stored selection; pass --mode salt_ds to "
                              "train phase one on it, or drop --selection")

    @property
    def kd_steps(self) -> int:
        """Steps at full KD weight (n_kd as resolved for the mode)."""
        if self.mode == "baseline":
            return 0
        if self.mode == "kd_full":
            return self.steps
        return self.n_kd if self.n_kd is not None else round(0.2 * self.steps)

    @property
    def windows_per_step(self) -> int:
        """Windows per optimizer step (the global batch); times the dataset's seq_len, its tokens."""
        return self.optim.batch_size * self.optim.grad_accum

    def trajectory(self) -> dict[str, Any]:
        """The settings that decide the run's trajectory: two runs with equal ones are the same run."""
        return {k: v for k, v in self.to_dict().items() if k not in RESUMABLE_CHANGES}

    def distinct(self) -> dict[str, Any]:
        """The trajectory's settings that differ from their defaults: what names a run (so a setting added
        later, at its default, leaves every existing run's name as it was)."""
        defaults = TrainConfig().to_dict()
        return {k: v for k, v in self.trajectory().items() if v != defaults.get(k)}

    def changes_from(self, saved: dict[str, Any]) -> list[str]:
        """Trajectory settings that differ from a saved config's, as ``name: old -> new`` lines."""
        old = TrainConfig.from_dict(saved).to_dict()
        return [f"{k}: {old.get(k)!r} -> {v!r}" for k, v in self.trajectory().items() if old.get(k) != v]
