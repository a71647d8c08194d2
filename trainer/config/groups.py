"""Setting groups shared by a training run and an experiment: model, optimiser, evaluation, KD, service.

Each default and each allowed value is written here once; the ``salt`` commands and experiment
configs are derived from these classes (see ``shared.config``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from shared.config import ConfigError, FlatConfig, check_choices, secret
from shared.labels import MAX_K
from shared.model import PRESETS
from shared.sampling import MAX_DRAWS, LabelKind
from trainer.config.choices import FaultPolicy, KDSelect, KDUntil, Transition


def _at_least(obj: object, minimum: float, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if value < minimum:
            raise ConfigError(f"{name} must be at least {minimum}, got {value}")


@dataclass(frozen=True)
class ModelConfig(FlatConfig):
    """The model a run trains: a GPT preset, or a Hugging Face causal LM."""

    preset: str = "llm"
    """Model preset (``salt presets`` lists them); not used with --model."""
    model: str | None = None
    """A Hugging Face causal LM instead of a preset: its config.json (random init) or model folder (its weights)."""
    block_size: int | None = None
    """Context of a preset model (default: the dataset's seq_len, which it may not be smaller than)."""

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ConfigError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        if self.block_size is not None:
            _at_least(self, 1, "block_size")
        if self.model is not None and self.block_size is not None:
            raise ConfigError("--block-size sets a preset model's context; a Hugging Face model has its own",
                              "drop --block-size")

    @property
    def name(self) -> str:
        """The preset, or the Hugging Face model's folder name."""
        if self.model is None:
            return self.preset
        p = Path(self.model)
        return p.parent.name if p.name == "config.json" else p.name


@dataclass(frozen=True)
class OptimConfig(FlatConfig):
    """AdamW with linear warm-up and cosine decay, gradient clipping and accumulation."""

    batch_size: int = 16
    """Windows per micro-batch."""
    grad_accum: int = 1
    """Micro-batches per optimizer step (global batch = batch_size * grad_accum)."""
    lr: float = 2e-3
    """Peak learning rate."""
    min_lr_ratio: float = 0.1
    """Final learning rate as a fraction of the peak (the cosine decay ends there)."""
    warmup_steps: int = 30
    """Linear warm-up steps from 0 to the peak learning rate."""
    weight_decay: float = 0.1
    """AdamW decoupled weight decay, on matrices only (not on norms or biases)."""
    beta1: float = 0.9
    """AdamW's first-moment decay."""
    beta2: float = 0.95
    """AdamW's second-moment decay."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value (0: off)."""

    def __post_init__(self) -> None:
        _at_least(self, 1, "batch_size", "grad_accum")
        if self.warmup_steps < 0:
            raise ConfigError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.grad_clip < 0:
            raise ConfigError(f"grad_clip must be >= 0, got {self.grad_clip}")
        for name in ("beta1", "beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}")


@dataclass(frozen=True)
class EvalConfig(FlatConfig):
    """Held-out evaluation and checkpoints."""

    eval_every: int = 50
    """Evaluate on the validation split every N steps (and at the end)."""
    eval_windows: int = 512
    """Validation windows per evaluation (the first ones of the split; all if fewer)."""
    ckpt_every: int = 100
    """Checkpoint every N steps (and at the end)."""

    def __post_init__(self) -> None:
        _at_least(self, 1, "eval_every", "eval_windows", "ckpt_every")


@dataclass(frozen=True)
class KDConfig(FlatConfig):
    """How phase one distils: the soft labels asked for, their weight and how it falls after n_kd."""

    kd_weight: float = 0.5
    """w in phase one's loss (1 - w) * CE + w * KD."""
    kd_transition: Transition = "step"
    """KD weight after phase one: step (0 at once), linear or cosine (a fall to 0 over kd_transition_steps), or
    wsd (a ramp up over kd_warmup_steps, a hold, then a linear fall over kd_transition_steps)."""
    kd_transition_steps: int = 0
    """Length of the linear, cosine or wsd fall, in steps."""
    kd_warmup_steps: int = 0
    """Steps of the KD weight's ramp from 0 at the start of the run; kd_transition wsd."""
    kd_until: KDUntil = "n_kd"
    """When phase one ends: n_kd (after n_kd steps) or auto (at the first evaluation where the student's
    validation loss is within kd_auto_margin of the SLM's on the same windows; n_kd stays the most)."""
    kd_auto_margin: float = 0.05
    """Nats above the SLM's validation loss at which --kd-until auto ends phase one (0: when the student
    reaches the SLM). KD pulls the student towards the SLM and stops helping there; the default ends phase
    one a little before, so the transition is under way when the student would pass it."""
    kd_select: KDSelect = "none"
    """Positions that get the KD term (cross-entropy at all): none (every one), topk (where the SLM's top-k
    ids hold the true next token) or loss (where the SLM's loss on it is under kd_select_max_loss)."""
    kd_select_max_loss: float = 3.0
    """Nats: kd_select loss distils where the SLM's loss on the true next token is under this."""
    kd_labels: LabelKind = "topk"
    """Teacher labels: topk (kd_k ids with log-probs and a tail bucket) or sample (kd_draws draws per position
    as ids and counts, trained with the unbiased estimator of full distillation)."""
    kd_k: int = 32
    """Teacher top-k ids per position (the rest is one tail bucket); kd_labels topk."""
    kd_draws: int = 64
    """Teacher draws per position; kd_labels sample."""
    kd_temperature: float = 1.0
    """Softmax temperature of teacher and student in the KD term."""

    def __post_init__(self) -> None:
        check_choices(self)
        if not 0.0 <= self.kd_weight <= 1.0:
            raise ConfigError(f"kd_weight must be in [0, 1], got {self.kd_weight}")
        _at_least(self, 0, "kd_transition_steps", "kd_warmup_steps", "kd_auto_margin")
        if self.kd_warmup_steps and self.kd_transition != "wsd":
            raise ConfigError(f"kd_warmup_steps is the ramp of --kd-transition wsd, not {self.kd_transition}",
                              "pass --kd-transition wsd or drop --kd-warmup-steps")
        if self.kd_select_max_loss <= 0:
            raise ConfigError(f"kd_select_max_loss must be positive, got {self.kd_select_max_loss}")
        if not 1 <= self.kd_k <= MAX_K:
            raise ConfigError(f"kd_k must be in [1, {MAX_K}], got {self.kd_k}")
        if not 1 <= self.kd_draws <= MAX_DRAWS:
            raise ConfigError(f"kd_draws must be in [1, {MAX_DRAWS}], got {self.kd_draws}")
        if self.kd_temperature <= 0:
            raise ConfigError(f"kd_temperature must be positive, got {self.kd_temperature}")


def _api_key_from_env() -> str | None:
    return os.environ.get("SALT_API_KEY") or None


@dataclass(frozen=True)
class ServiceConfig(FlatConfig):
    """The connection to the selector service and what a fault does."""

    service_url: str | None = None
    """Selector service URL(s), comma-separated (replicas); needed by the KD modes."""
    fault_policy: FaultPolicy = "fail"
    """Service fault after retries: fail (stop, checkpoint kept) or fallback (that batch: CE only)."""
    retry_deadline_s: float = 30.0
    """Seconds of client retries (connect errors, 503) per request before the fault policy applies."""
    prefetch_depth: int = 4
    """Phase-one steps fetched ahead of the training loop."""
    api_key: str | None = secret(default_factory=_api_key_from_env)
    """The service's API key (default: the SALT_API_KEY environment variable); never saved."""
    labels_from: str | None = None
    """A label export (``salt export``) read in place of the service: phase one needs no service."""

    def __post_init__(self) -> None:
        check_choices(self)
        if self.prefetch_depth < 1 or self.retry_deadline_s < 0:
            raise ConfigError("prefetch_depth must be >= 1 and retry_deadline_s >= 0")

    @property
    def urls(self) -> list[str]:
        """The replicas' base URLs."""
        return [u.strip() for u in (self.service_url or "").split(",") if u.strip()]
