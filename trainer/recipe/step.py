"""The steps of the recipe: one optimizer step, an evaluation, a checkpoint.

``train_step`` is nanoGPT's loop body as a function: take the step's micro-batches (``trainer.batches``:
with soft labels from the teacher in phase one, raw windows in phase two), set the learning rate,
accumulate the micro-batches' gradients, clip, step, and return the step's metrics record.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from typing import Any

import torch

from shared.errors import SaltError
from trainer.batches import StepBatch
from trainer.config.choices import KDSelect
from trainer.distributed import all_sum
from trainer.fused_loss import fused_ce, fused_ce_kd, kd_targets
from trainer.losses import KDLoss, Labels, mixed_loss, next_token_ce
from trainer.prefetch import TeacherFault
from trainer.recipe.checkpointing import CKPT_DIR, save_checkpoint
from trainer.recipe.evaluate import evaluate
from trainer.recipe.setup import RunState
from trainer.selection import kd_positions
from trainer.sharding import full_model_state, grad_norm_value, optimizer_state

log = logging.getLogger(__name__)

Micro = tuple[torch.Tensor, Labels | None]
"""One micro-batch: (B, T + 1) int64 windows, and their soft labels (None: cross-entropy alone)."""


def micro_loss(
    model: torch.nn.Module, windows: torch.Tensor, labels: Labels | None, weight: float, kd: KDLoss,
    select: KDSelect = "none", max_loss: float = 0.0,
) -> tuple[torch.Tensor, float, float | None]:
    """Loss of one micro-batch: (1 - w) * CE + w * KD, or CE alone without labels; also CE and KD values.

    Args:
        model: maps (B, T) ids to (B, T, V) logits.
        windows: (B, T + 1) int64 windows on the model's device.
        labels: soft labels of ``windows[:, :-1]``'s predictions, or None.
        weight: the KD weight w of this step.
        kd: the KD loss module.
        select, max_loss: the positions KD counts at (``trainer.selection.kd_positions``); CE counts at all.
    """
    logits = model(windows[:, :-1])  # (B, T, V)
    if labels is None or weight == 0.0:
        loss, ce_val = fused_ce(logits, windows[:, 1:])
        return loss, ce_val, None
    chosen = kd_positions(labels, windows[:, 1:], select, max_loss)
    if kd.temperature == 1.0:  # CE and KD share one softmax (the usual case)
        return fused_ce_kd(logits, windows[:, 1:], kd_targets(labels, logits.device), weight, chosen)
    ce = next_token_ce(logits, windows[:, 1:])
    kd_val = kd.of(logits, labels, chosen)
    assert kd_val is not None
    return mixed_loss(ce, kd_val, weight), ce.item(), kd_val.item()


def next_batch(state: RunState, step: int) -> StepBatch:
    """The step's batches; a service fault under ``fail`` keeps a checkpoint of this step to resume from."""
    try:
        batch = state.batches.get(step)
    except TeacherFault as e:
        checkpoint_step(state, step)
        raise SaltError(f"{e}; checkpoint of step {step} kept in {state.out / CKPT_DIR}",
                        "restart the service and pass --resume, or use --fault-policy fallback") from e
    state.totals["teacher_s"] += batch.teacher_s
    return batch


def train_step(state: RunState, step: int) -> dict[str, Any]:
    """One optimizer step (0-based ``step``); returns its metrics record (``kind: train``)."""
    t0 = time.perf_counter()
    batch = next_batch(state, step)
    weight, lr = batch.kd_weight, batch.lr
    for group in state.optimizer.param_groups:
        group["lr"] = lr
    state.optimizer.zero_grad(set_to_none=True)
    loss, ce, kd, fallbacks = _accumulate(state, [(m.windows, m.labels) for m in batch.micro], weight)
    if not math.isfinite(loss):
        raise SaltError(f"loss became {loss} at step {step + 1}", "lower --lr or resume from the last checkpoint")
    clip = state.cfg.optim.grad_clip if state.cfg.optim.grad_clip > 0 else float("inf")
    grad_norm = grad_norm_value(torch.nn.utils.clip_grad_norm_(state.model.parameters(), clip))
    state.optimizer.step()
    if state.device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    state.totals["train_s"] += dt
    state.totals["data_wait_s"] += batch.wait_s
    state.totals["fallback_batches"] += fallbacks
    done, tokens = step + 1, state.tokens_per_step
    return {"kind": "train", "step": done, "loss": loss, "ce": ce, "kd": kd, "kd_weight": weight, "lr": lr,
            "grad_norm": grad_norm, "tokens": done * tokens, "step_s": dt, "data_wait_s": batch.wait_s,
            "fallback_batches": fallbacks, "tok_per_s": tokens / dt}


def _accumulate(state: RunState, micro: list[Micro], weight: float) -> tuple[float, float, float | None, int]:
    """Forward and backward of every micro-batch; the step's loss, CE, KD (None: no KD) and fallbacks,
    over the whole global batch (the same on every rank)."""
    n = state.cfg.optim.grad_accum
    ddp = state.ddp
    loss_value = ce_value = 0.0
    kd_value: float | None = None
    fallbacks = 0
    for i, (windows, labels) in enumerate(micro):
        windows = windows.to(state.device, non_blocking=True)
        fallbacks += int(weight > 0 and labels is None)
        # DDP averages the gradients over the ranks once per step, at the last micro-batch.
        last = i == len(micro) - 1
        sync = ddp.no_sync() if ddp is not None and not last else contextlib.nullcontext()
        if state.sharded:
            state.model.set_requires_gradient_sync(last)  # type: ignore[operator]
        with sync:
            with state.autocast:
                loss, ce_v, kd_v = micro_loss(state.forward, windows, labels, weight, state.kd_loss,
                                              state.cfg.kd.kd_select, state.cfg.kd.kd_select_max_loss)
            (loss / n).backward()
        loss_value += loss.item() / n
        ce_value += ce_v / n
        if kd_v is not None:
            kd_value = (kd_value or 0.0) + kd_v / n
    world = state.world
    if world.parallel:
        loss_sum, ce_sum, kd_sum, kd_ranks, fallbacks_f = all_sum(
            world, [loss_value, ce_value, kd_value or 0.0, float(kd_value is not None), float(fallbacks)],
            state.device)
        loss_value, ce_value = loss_sum / world.size, ce_sum / world.size
        kd_value = kd_sum / kd_ranks if kd_ranks else None
        fallbacks = int(fallbacks_f)
    return loss_value, ce_value, kd_value, fallbacks


def eval_step(state: RunState, step: int) -> dict[str, float]:
    """Evaluate on the validation split and log the record (``kind: eval``)."""
    cfg = state.cfg
    ev = evaluate(state.model, state.ds.val, max_windows=cfg.eval.eval_windows, batch_size=cfg.optim.batch_size,
                  device=state.device, autocast=state.autocast, world=state.world)
    state.metrics.write({"kind": "eval", "step": step, **ev})
    state.last_eval = ev
    if state.phase_one.open_at(step):
        end_phase_one_if_close(state, step, ev["val_loss"])
    return ev


def end_phase_one_if_close(state: RunState, step: int, val_loss: float) -> None:
    """``--kd-until auto``: end phase one at ``step`` when the student's validation loss is within the margin of
    the SLM's on the same windows; logs it and writes a ``kind: kd_end`` record.

    The SLM's loss is asked of the service once (its per-window scores, so no labels and no new forward
    pass once cached), by rank 0, and shared: with the evaluation's loss summed over the ranks, every rank
    decides the same step.
    """
    if state.slm_val_loss is None:
        state.slm_val_loss = _slm_val_loss(state)
    slm = state.slm_val_loss
    if not state.phase_one.close_enough(val_loss, slm):
        return
    state.batches.end_phase_one(step)
    p = state.phase_one
    state.metrics.write({"kind": "kd_end", "step": step, "val_loss": val_loss, "slm_val_loss": slm,
                         "margin": state.cfg.kd.kd_auto_margin, "phase_one_end": p.phase_one_end})
    if state.world.main:
        log.info("step %d: validation loss %.4f is within %g nats of the SLM's %.4f: phase one ends (%s "
                 "transition, KD weight 0 from step %d)", step, val_loss, state.cfg.kd.kd_auto_margin, slm,
                 state.cfg.kd.kd_transition, p.phase_one_end)


def _slm_val_loss(state: RunState) -> float:
    """The SLM's loss on the evaluation windows, asked by rank 0 and the same on every rank (a failure too)."""
    failure: SaltError | None = None
    mine = 0.0
    if state.world.main and state.teacher is not None:
        windows = state.ds.val.batch(range(min(state.cfg.eval.eval_windows, len(state.ds.val)))).numpy()
        try:
            mine = state.teacher.val_loss(windows)
        except SaltError as e:
            failure, mine = e, math.nan  # the other ranks learn of it from the sum, and stop too
    total = all_sum(state.world, [mine], state.device)[0]
    if math.isnan(total):
        raise failure or SaltError("the selector service failed to score the validation windows (on rank 0)",
                                   "restart the service and pass --resume")
    return total


def checkpoint_step(state: RunState, step: int) -> None:
    """Write the checkpoint of ``step``: rank 0 writes it whole (a sharded student's state gathered first)."""
    world, parallel = state.world, state.cfg.parallel
    weights = full_model_state(state.model, world, parallel)
    optim, fmt = optimizer_state(state.model, state.optimizer, world, parallel)
    if world.main:
        extra = {"dataset_fingerprint": state.ds.fingerprint, "totals": state.totals}
        save_checkpoint(state.out, state.model, state.tokenizer, state.ds.eot_id, optim, step=step,
                        config=state.cfg.to_dict(), extra=extra, weights=weights, optimizer_format=fmt,
                        kd_end_step=state.phase_one.decided)
