"""Phase one's objective ``(1 - w) * CE + w * KD`` in one pass over the student's logits.

Computed apart, the cross-entropy and the KD loss each take a log-sum-exp over the vocabulary and keep
their own (B, L, V) buffers for the backward pass, and the top-k tail adds a masked copy of the logits.
Here the softmax is computed once, in one float32 (B, L, V) buffer that becomes the gradient in place
(the analytic gradient of both terms), so a phase-one step costs about what a plain step costs.

The values are those of ``mixed_loss(next_token_ce(...), TopKTailKDLoss()(...) or SampledKDLoss()(...))``
(tests check values and gradients against them). For either label kind the KD term is
``-sum_i q_i log s_i - q_tail log s_tail`` over the teacher's ids i with target probabilities q_i (top-k:
the renormalised buckets; sampled: counts / N, no tail), whose gradient with respect to logit v is
``s_v - q_v`` for the teacher's ids and ``s_v (1 - q_tail / s_tail)`` elsewhere, since the q sum to 1.

Shapes: B = batch, L = positions, V = vocabulary, k = teacher ids per position; N = B * L.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from shared.labels import SoftLabels
from shared.sampling import SampledLabels
from trainer.losses import teacher_buckets

_TINY = torch.finfo(torch.float32).tiny
"""The student's tail mass is floored here (float32's smallest normal) before its log is taken."""


@dataclass
class KDTargets:
    """What the student is distilled towards, flat over positions.

    Attributes:
        ids: (N, k) int64 teacher ids.
        probs: (N, k) float32 target probabilities of those ids.
        tail: (N,) float32 target mass outside the ids, or None (sampled labels: the draws are the target).
        mask: (N,) bool, True where the position is distilled.
    """

    ids: torch.Tensor
    probs: torch.Tensor
    tail: torch.Tensor | None
    mask: torch.Tensor


def kd_targets(labels: SoftLabels | SampledLabels, device: torch.device) -> KDTargets:
    """The flat KD targets of a batch's labels on ``device``; positions past a window's length are masked."""
    L = labels.ids.shape[1]
    mask = (torch.arange(L, device=device).unsqueeze(0) < labels.lengths.to(device).unsqueeze(1)).flatten()
    ids = labels.ids.to(device).flatten(0, 1)  # (N, k)
    if isinstance(labels, SampledLabels):
        probs = labels.counts.to(device).flatten(0, 1).float() / labels.draws  # (N, k)
        return KDTargets(ids, probs, None, mask)
    p_top, p_tail = teacher_buckets(labels.logprobs.to(device).flatten(0, 1), labels.tail.to(device).flatten())
    return KDTargets(ids, p_top, p_tail, mask)  # (N, k), (N,)


def fused_ce_kd(logits: torch.Tensor, targets: torch.Tensor, kd: KDTargets, weight: float,
                select: torch.Tensor | None = None) -> tuple[torch.Tensor, float, float]:
    """``(1 - weight) * CE + weight * KD`` of (B, L, V) logits, with CE and KD values for the log.

    Args:
        logits: (B, L, V) student logits (any float dtype; computed in float32).
        targets: (B, L) int64 true next tokens (CE at every position).
        kd: the KD targets of the same positions.
        weight: the KD weight w in [0, 1].
        select: (B, L) bool, positions to distil besides ``kd.mask`` (token-selective KD); None: all.

    Returns:
        the scalar loss (differentiable in ``logits``), the mean CE and the mean KD over distilled positions.
    """
    mask = kd.mask if select is None else kd.mask & select.flatten()
    loss, ce, kd_mean = _FusedCEKD.apply(logits, targets, kd.ids, kd.probs, kd.tail, mask, weight)
    return loss, float(ce), float(kd_mean)


def fused_ce(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Mean cross-entropy of (B, L, V) logits against (B, L) targets, in the same one-buffer pass (a plain
    step's loss: autograd's cross-entropy keeps a float32 copy, its log-softmax and the gradient apart).

    Returns:
        the scalar loss (differentiable in ``logits``) and its value.
    """
    n = logits.shape[0] * logits.shape[1]
    none = torch.empty((n, 0), dtype=torch.long, device=logits.device)  # no teacher ids
    loss, ce, _ = _FusedCEKD.apply(logits, targets, none, none.float(), None,
                                   torch.zeros(n, dtype=torch.bool, device=logits.device), 0.0)
    return loss, float(ce)


class _FusedCEKD(torch.autograd.Function):
    """Loss and gradient over one (N, V) buffer: the softmax of the forward pass becomes the gradient."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, targets: torch.Tensor, ids: torch.Tensor, probs: torch.Tensor,
                tail: torch.Tensor | None, mask: torch.Tensor, weight: float) -> tuple[torch.Tensor, ...]:
        shape, dtype = logits.shape, logits.dtype
        buf = logits.detach().flatten(0, 1).to(torch.float32, copy=True)  # (N, V), becomes the gradient
        n = buf.shape[0]
        t = targets.flatten().unsqueeze(1)  # (N, 1)
        lse = torch.logsumexp(buf, dim=-1)  # (N,)
        ce_pos = lse - buf.gather(1, t).squeeze(1)  # (N,)
        s_top = buf.gather(1, ids) - lse.unsqueeze(1)  # (N, k) student log-probs of the teacher's ids
        p = buf.sub_(lse.unsqueeze(1)).exp_()  # (N, V) student softmax, in place
        m = mask.to(torch.float32)  # (N,)
        a = (1.0 - weight) / n  # CE's share of each position
        b = weight * m / m.sum().clamp_min(1.0)  # (N,) KD's share (0 where not distilled)
        kd_pos = -(probs * s_top).sum(1)  # (N,)
        if tail is None:  # the gradient: (a + b) p, less b q at the drawn ids
            scale, inside = a + b, -b.unsqueeze(1) * probs
        else:  # (a + b) p less b q at the teacher's ids; outside them, p scaled by a + b - b q_tail / p_out
            p_in = p.gather(1, ids)  # (N, k)
            p_out = p.scatter_(1, ids, 0.0).sum(1)  # (N,) exact mass outside the ids, however small
            kd_pos = kd_pos - tail * torch.log(p_out.clamp_min(_TINY))
            scale = a + b - b * tail / p_out.clamp_min(_TINY)
            inside = (a + b).unsqueeze(1) * p_in - b.unsqueeze(1) * probs
        # the (N, V) pass that scales p into the gradient waits for the backward pass, which scales it anyway
        ctx.save_for_backward(p, scale, inside, ids, t)
        ctx.a, ctx.sampled, ctx.shape, ctx.dtype = a, tail is None, shape, dtype
        loss = a * ce_pos.sum() + (b * kd_pos).sum()
        kd_mean = (kd_pos * m).sum() / m.sum().clamp_min(1.0)
        ce, kd_val = ce_pos.mean(), kd_mean
        ctx.mark_non_differentiable(ce, kd_val)
        return loss, ce, kd_val

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_loss: torch.Tensor, *_unused: Any) -> tuple[torch.Tensor | None, ...]:
        p, scale, inside, ids, t = ctx.saved_tensors
        grad = p.mul_(scale.unsqueeze(1) * grad_loss)  # (N, V)
        if ctx.sampled:
            grad.scatter_add_(1, ids, inside * grad_loss)
        else:
            grad.scatter_(1, ids, inside * grad_loss)
        grad.scatter_add_(1, t, (-ctx.a * grad_loss).expand(t.shape).to(grad.dtype))
        return grad.view(ctx.shape).to(ctx.dtype), None, None, None, None, None, None
