"""Training configuration: one frozen dataclass, validated on construction."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from shared.device import PRECISIONS
from shared.model import PRESETS

MODES = ("baseline", "salt", "salt_ds", "kd_full")
KD_MODES = ("salt", "salt_ds", "kd_full")


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
    """``baseline`` (cross-entropy only), ``salt`` (KD on raw batches for n_kd steps), ``salt_ds`` (KD on
    the SLM-selected windows for n_kd steps) or ``kd_full`` (KD for the whole run)."""
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
    """``auto`` (bf16 autocast where the device runs bf16 natively: a recent GPU, or a CPU with
    AVX512-BF16 or AMX; fp32 otherwise), ``fp32`` or ``bf16``."""
    block_size: int | None = None
    """Model context; defaults to the dataset's seq_len, and may not be smaller than it."""
    kd_weight: float = 0.5
    """w in phase one's loss (1 - w) * CE + w * KD."""
    n_kd: int | None = None
    """Phase-one steps (KD at full weight); None: 20% of the run (``kd_full``: the whole run)."""
    kd_transition: str = "step"
    """How the KD weight falls to 0 after n_kd: ``step`` (at once) or ``linear``."""
    kd_transition_steps: int = 0
    """Length of the ``linear`` fall, in steps."""
    kd_k: int = 32
    """Teacher ids kept per position (the rest is one tail bucket)."""
    kd_temperature: float = 1.0
    """Softmax temperature of teacher and student in the KD term."""
    service_url: str | None = None
    """Selector service base URL(s), comma-separated; needed by the KD modes."""
    selection: str | None = None
    """Id of a stored selection on the service (``salt_ds``): phase one draws from its windows."""
    fault_policy: str = "fail"
    """After the client's retries: ``fail`` (stop, checkpoint kept) or ``fallback`` (that batch: CE only)."""
    retry_deadline_s: float = 30.0
    """How long the client retries a failing request (connect errors, 503) before the policy applies."""
    prefetch_depth: int = 4
    """Phase-one steps fetched ahead of the training loop."""

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
        if not 0.0 <= self.kd_weight <= 1.0:
            raise ValueError(f"kd_weight must be in [0, 1], got {self.kd_weight}")
        if self.n_kd is not None and not 0 <= self.n_kd <= self.steps:
            raise ValueError(f"n_kd ({self.n_kd}) must be within the run's {self.steps} steps")
        if self.kd_transition not in ("step", "linear"):
            raise ValueError(f"kd_transition must be step or linear, got {self.kd_transition!r}")
        if self.kd_transition_steps < 0:
            raise ValueError(f"kd_transition_steps must be >= 0, got {self.kd_transition_steps}")
        if not 1 <= self.kd_k <= 256:
            raise ValueError(f"kd_k must be in [1, 256], got {self.kd_k}")
        if self.kd_temperature <= 0:
            raise ValueError(f"kd_temperature must be positive, got {self.kd_temperature}")
        if self.fault_policy not in ("fail", "fallback"):
            raise ValueError(f"fault_policy must be fail or fallback, got {self.fault_policy!r}")
        if self.mode in KD_MODES and not self.service_url:
            raise ValueError(f"mode {self.mode} needs a selector service: pass its URL (--service-url)")
        if self.mode == "salt_ds" and not self.selection:
            raise ValueError("mode salt_ds needs a stored selection: pass its id (--selection)")
        if self.prefetch_depth < 1 or self.retry_deadline_s < 0:
            raise ValueError("prefetch_depth must be >= 1 and retry_deadline_s >= 0")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be auto, fp32 or bf16, got {self.precision!r}")

    @property
    def kd_steps(self) -> int:
        """Steps at full KD weight (n_kd as resolved for the mode)."""
        if self.mode == "baseline":
            return 0
        if self.mode == "kd_full":
            return self.steps
        return self.n_kd if self.n_kd is not None else round(0.2 * self.steps)

    @property
    def phase_one_end(self) -> int:
        """First step whose KD weight is 0 (phase two starts there and never calls the service)."""
        extra = self.kd_transition_steps if self.kd_transition == "linear" and self.kd_steps > 0 else 0
        return min(self.steps, self.kd_steps + extra)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# Fields that may differ between a run and its resumption without changing the trajectory.
RESUMABLE_CHANGES = frozenset(
    {"out", "data", "eval_every", "ckpt_every", "device", "service_url", "fault_policy", "retry_deadline_s",
     "prefetch_depth"}
)
