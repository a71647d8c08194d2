"""Set-up of a training run: the run folder, the model (fresh or resumed), the optimizer and the run state.

Everything the loop needs is gathered in one ``RunState``; the teacher (the selector service) is
connected and checked before this, so a bad service never touches the run folder.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from tokenizers import Tokenizer

from shared.data import PackedDataset
from shared.device import autocast_for
from shared.errors import SaltError
from trainer.batches import StepBatches
from trainer.config import TrainConfig
from trainer.distributed import World
from trainer.losses import KDLoss, kd_loss_for
from trainer.phase_one import PhaseOne
from trainer.recipe.checkpointing import CKPT_DIR, load_checkpoint, saved_step
from trainer.recipe.metrics import MetricsLog, MetricsSink, NoMetrics
from trainer.recipe.student import new_student
from trainer.sharding import load_optimizer_state, sharded, wrap
from trainer.teacher import Teacher

log = logging.getLogger(__name__)


@dataclass
class RunState:
    """What the loop works on: the run's settings, data, model, optimizer and running totals."""

    cfg: TrainConfig
    ds: PackedDataset
    world: World
    device: torch.device
    model: nn.Module
    """The model itself (what is saved and evaluated)."""
    forward: torch.nn.Module
    """What the training step calls: the model, or its DDP wrapper under torchrun."""
    optimizer: torch.optim.Optimizer
    tokenizer: Tokenizer
    autocast: contextlib.AbstractContextManager[object]
    kd_loss: KDLoss
    metrics: MetricsSink
    batches: StepBatches
    """Each step's micro-batches: from the teacher in phase one, the local dataset after."""
    start_step: int
    totals: dict[str, Any] = field(default_factory=dict)
    """Carried across resumptions (saved with each checkpoint): train_s, data_wait_s, teacher_s, fallbacks."""
    last_eval: dict[str, float] = field(default_factory=dict)
    """The latest evaluation of this process (empty until one ran)."""
    slm_val_loss: float | None = None
    """The SLM's loss on the evaluation windows (``--kd-until auto``; None until asked)."""

    @property
    def teacher(self) -> Teacher | None:
        return self.batches.teacher

    @property
    def phase_one(self) -> PhaseOne:
        return self.batches.phase_one

    @property
    def out(self) -> Path:
        return Path(self.cfg.out)

    @property
    def ddp(self) -> torch.nn.parallel.DistributedDataParallel | None:
        forward = self.forward
        return forward if isinstance(forward, torch.nn.parallel.DistributedDataParallel) else None

    @property
    def sharded(self) -> bool:
        """Whether the student is sharded over the processes (FSDP)."""
        return sharded(self.world, self.cfg.parallel)

    @property
    def tokens_per_step(self) -> int:
        return self.cfg.windows_per_step * self.ds.seq_len


def make_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (embeddings included), none on norms and biases."""
    o = cfg.optim
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=o.lr, betas=(o.beta1, o.beta2), fused=device.type == "cuda")


def check_run_folder(cfg: TrainConfig, *, resume: bool, overwrite: bool) -> int:
    """Refuse a folder that does not fit the request; the step to start from (the checkpoint's on resume)."""
    out = Path(cfg.out)
    if resume and not (out / CKPT_DIR).exists():
        raise SaltError(f"{out} has no checkpoint to resume from", "run without --resume to start fresh")
    if not resume and out.exists() and any(out.iterdir()) and not overwrite:
        raise SaltError(f"run folder {out} is not empty", "pass --resume to continue it or --overwrite")
    return saved_step(out) if resume else 0


def fresh_student(cfg: TrainConfig, ds: PackedDataset) -> nn.Module:
    """The run's model at step 0: seeded, so every run (and every rank) with this config starts alike."""
    torch.manual_seed(cfg.seed)
    return new_student(cfg, ds)


def build_run(cfg: TrainConfig, ds: PackedDataset, device: torch.device, world: World, teacher: Teacher | None,
              *, student: nn.Module | None, phase_one: PhaseOne) -> RunState:
    """The run folder made ready (cleared unless resuming, on rank 0) and the state the loop starts from.

    Args:
        student: the fresh model of a new run (``fresh_student``), or None to resume from the checkpoint.
        phase_one: when phase one ends (with the checkpoint's decision on resume).
    """
    resume = student is None
    out = Path(cfg.out)
    if world.main:
        if not resume and out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    saved: dict[str, Any] | None = None
    if resume:
        model, tok, saved = _resumed(cfg, ds, device)
    else:
        tok = ds.tokenizer()
        model = student.to(device)
    # DDP broadcasts rank 0's parameters at construction (every rank built or loaded the same ones anyway);
    # FSDP shards them in place, so the optimizer is made after, over the shards.
    forward = wrap(model, world, cfg.parallel)
    optimizer = make_optimizer(model, cfg, device)
    start_step, prior = 0, {}
    if saved is not None:
        load_optimizer_state(model, optimizer, saved["optimizer"], saved.get("optimizer_format"), world, cfg.parallel)
        torch.set_rng_state(saved["torch_rng"])
        if saved["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(saved["cuda_rng"])
        start_step, prior = int(saved["step"]), saved["extra"].get("totals", {})
    metrics = MetricsLog(out, resume_step=start_step if resume else None) if world.main else NoMetrics()
    totals = {"train_s": 0.0, "data_wait_s": 0.0, "teacher_s": 0.0, "fallback_batches": 0, **prior}
    batches = StepBatches(cfg, ds, teacher, world, start_step=start_step, phase_one=phase_one)
    state = RunState(cfg, ds, world, device, model, forward, optimizer, tok, autocast_for(device, cfg.precision),
                     kd_loss_for(cfg.kd.kd_labels, cfg.kd.kd_temperature), metrics, batches, start_step, totals)
    log.info("%s: %s %s (%s params) on %s, %d steps of %d tokens%s", out, cfg.mode, cfg.arch.name,
             f"{model.num_params():,}", device, cfg.steps, state.tokens_per_step, _phase_one_line(phase_one))
    return state


def _phase_one_line(p: PhaseOne) -> str:
    """How the start-up line describes phase one."""
    if not p.phase_one_end:
        return ""
    kd = p.cfg.kd
    fall = (f", then a {kd.kd_transition} fall of the KD weight to 0 by step {p.phase_one_end}"
            if p.phase_one_end > p.end_step else "")
    if p.open_at(0):
        return (f", phase one (KD) until the student is within {kd.kd_auto_margin} nats of the SLM "
                f"(at most until step {p.end_step}){fall}")
    return f", phase one (KD) until step {p.end_step}{fall}"


def _resumed(cfg: TrainConfig, ds: PackedDataset, device: torch.device
             ) -> tuple[nn.Module, Tokenizer, dict[str, Any]]:
    """Model, tokenizer and trainer state of the run's checkpoint, checked against ``cfg``."""
    out = Path(cfg.out)
    model, tok, state = load_checkpoint(out, device=device)
    changes = cfg.changes_from(state["config"])
    if changes:
        raise SaltError(f"cannot resume with a different configuration ({', '.join(changes)})",
                        "pass the original options or start a new run folder")
    ds.check_tokenizer(tok, what=f"the checkpoint's tokenizer in {out}")
    if state["extra"].get("dataset_fingerprint") != ds.fingerprint:
        raise SaltError(f"the checkpoint in {out} was trained on another dataset", "pass the original --data")
    return model, tok, state
