"""The trainer's enumerations, each written once: the allowed values of its choice settings."""

from __future__ import annotations

from typing import Literal, get_args

from shared.device import PRECISIONS, Precision
from shared.selection import DIVERSITIES, SELECTION_METHODS, Diversity, SelectionMethod

Mode = Literal["baseline", "salt", "salt_ds", "kd_full"]
"""``baseline`` (cross-entropy only), ``salt`` (KD on raw batches for n_kd steps), ``salt_ds`` (KD on the
windows of a stored selection, of any method, for n_kd steps) or ``kd_full`` (KD for the whole run)."""
MODES: tuple[str, ...] = get_args(Mode)
KD_MODES: tuple[str, ...] = ("salt", "salt_ds", "kd_full")
"""Modes that ask the selector service for soft labels."""
SHORTENABLE_MODES: tuple[str, ...] = ("baseline", "salt", "kd_full")
"""Modes an experiment can also run on a shorter budget (``mode@fraction``)."""

Transition = Literal["step", "linear", "cosine", "wsd"]
"""How the KD weight falls to 0 after phase one: at once (``step``), over some steps (``linear``, ``cosine``),
or warmup-stable-decay (``wsd``: a ramp up over kd_warmup_steps, a hold, then a linear fall)."""
TRANSITIONS: tuple[str, ...] = get_args(Transition)

KDUntil = Literal["n_kd", "auto"]
"""When phase one ends: after n_kd steps, or at the first evaluation where the student's validation loss is
within kd_auto_margin of the SLM's on the same windows (``auto``; n_kd stays the most)."""
KD_UNTIL: tuple[str, ...] = get_args(KDUntil)

KDSelect = Literal["none", "topk", "loss"]
"""Where phase one distils: every position (``none``), where the SLM's top-k holds the true next token
(``topk``), or where the SLM's loss on it is under kd_select_max_loss (``loss``); cross-entropy everywhere."""
KD_SELECTS: tuple[str, ...] = get_args(KDSelect)

FaultPolicy = Literal["fail", "fallback"]
"""What a service fault does after the client's retries: stop the run (``fail``, checkpoint kept) or
train that batch on cross-entropy alone (``fallback``)."""
FAULT_POLICIES: tuple[str, ...] = get_args(FaultPolicy)

Parallel = Literal["ddp", "fsdp"]
"""How torchrun processes hold the student: ``ddp`` (a full copy each) or ``fsdp`` (sharded over them:
parameters, gradients and optimizer state)."""
PARALLELS: tuple[str, ...] = get_args(Parallel)

__all__ = [
    "DIVERSITIES",
    "FAULT_POLICIES",
    "KD_MODES",
    "KD_SELECTS",
    "KD_UNTIL",
    "MODES",
    "PARALLELS",
    "PRECISIONS",
    "SELECTION_METHODS",
    "SHORTENABLE_MODES",
    "TRANSITIONS",
    "Diversity",
    "FaultPolicy",
    "KDSelect",
    "KDUntil",
    "Mode",
    "Parallel",
    "Precision",
    "SelectionMethod",
    "Transition",
]
