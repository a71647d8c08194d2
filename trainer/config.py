"""Training configuration: one frozen dataclass, validated on construction."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from shared.model import PRESETS

MODES = ("baseline",)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run. Saved with every checkpoint."""

    data: str
    """Prepared dataset folder (``salt prepare``)."""
    out: str
    """Run folder: metrics.jsonl, checkpoint/, summary.json."""
    preset: str = "llm"
    """Model preset (``salt presets`` lists them)."""
    mode: str = "baseline"
    """Training mode; ``baseline`` is plain next-token cross-entropy."""
    steps: int = 300
    """Optimizer steps in the run."""
    batch_size: int = 16
    """Windows per micro-batch."""
    grad_accum: int = 1
    """Micro-batches accumulated per optimizer step (global batch = batch_size * grad_accum)."""
    lr: float = 2e-3
    """Peak learning rate."""
    min_lr_ratio: float = 0.1
    """Final learning rate as a fraction of the peak (cosine decay ends there)."""
    warmup_steps: int = 30
    """Linear warm-up steps from 0 to the peak learning rate."""
    weight_decay: float = 0.1
    """AdamW decoupled weight decay, applied to matrices only (not to norms or biases)."""
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value (0 turns clipping off)."""
    seed: int = 0
    """Seeds model initialization and data order."""
    eval_every: int = 50
    """Evaluate on the validation split every this many steps (and at the end)."""
    eval_windows: int = 512
    """Validation windows used per evaluation (the first ones of the split; all if fewer)."""
    ckpt_every: int = 100
    """Write a checkpoint every this many steps (and at the end)."""
    device: str = "auto"
    """``auto`` (CUDA when present), ``cpu`` or ``cuda[:N]``."""
    precision: str = "auto"
    """``auto`` (bf16 autocast on a GPU that supports it, fp32 otherwise), ``fp32`` or ``bf16``."""
    block_size: int | None = None
    """Model context; defaults to the dataset's seq_len, and may not be smaller than it."""

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; choose one of {', '.join(MODES)}")
        for name in ("steps", "batch_size", "grad_accum", "eval_every", "ckpt_every", "eval_windows"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.warmup_steps < 0 or self.warmup_steps > self.steps:
            raise ValueError(f"warmup_steps must be in [0, steps={self.steps}], got {self.warmup_steps}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.grad_clip < 0:
            raise ValueError(f"grad_clip must be >= 0, got {self.grad_clip}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision must be auto, fp32 or bf16, got {self.precision!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# Fields that may differ between a run and its resumption without changing the trajectory.
RESUMABLE_CHANGES = frozenset({"out", "data", "eval_every", "ckpt_every", "device"})
