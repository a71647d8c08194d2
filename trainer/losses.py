"""Losses: next-token cross-entropy, top-k + tail knowledge distillation and its unbiased sampled form.

Shapes: B = batch, L = predicted positions, V = vocabulary, k = teacher ids kept per position, W = unique
sampled ids per position.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from shared.labels import SoftLabels
from shared.sampling import LabelKind, SampledLabels

Labels = SoftLabels | SampledLabels
"""Teacher labels of either kind."""

_NO_LOGIT = -1e30
"""Stands in for the teacher's ids when the student's tail is summed (exp of it is 0 in float32)."""


class TopKTailKDLoss(nn.Module):
    """Cross-entropy between the teacher's k + 1 buckets and the student's.

    The teacher gives, per position, its top-k ids with their log-probs and the log of the remaining
    mass (the tail); its k + 1 buckets are renormalised to sum to 1 (float16 storage leaves them off by a
    little). The student's distribution is collapsed onto the same buckets: its probability of each of the
    teacher's ids, and its mass outside them (summed over those logits, exact however small). With k = V
    the tail is empty and the loss is exactly the full-vocabulary distillation loss
    ``-sum_v p_teacher(v) log p_student(v)``.

    The loss is the cross-entropy (not the KL divergence): both differ by the teacher's entropy, a
    constant for the student, so gradients are the same.
    """

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = temperature

    def forward(
        self,
        student_logits: torch.Tensor,
        teacher_ids: torch.Tensor,
        teacher_logprobs: torch.Tensor,
        teacher_tail: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mean KD loss over unmasked positions.

        Args:
            student_logits: (B, L, V) raw student logits.
            teacher_ids: (B, L, k) int64 teacher top-k ids.
            teacher_logprobs: (B, L, k) teacher log-probs of those ids (at the same temperature).
            teacher_tail: (B, L) log of the teacher's mass outside its top-k; ``exp`` of it may be 0.
            mask: (B, L) bool, True where the position counts; None counts every position.

        Returns:
            scalar loss (0 when no position counts).
        """
        logits = _scaled(student_logits, self.temperature)  # (B, L, V)
        log_z = torch.logsumexp(logits, dim=-1)  # (B, L)
        s_top = logits.gather(-1, teacher_ids) - log_z.unsqueeze(-1)  # (B, L, k)
        # Student tail: the log of its mass outside the teacher's ids, a log-sum-exp over the other logits, so
        # it stays exact (and keeps its gradient) however small that mass gets. An empty tail (k = V) is a
        # large finite negative: no NaN, and no gradient, as its zero teacher mass asks.
        outside = logits.scatter(-1, teacher_ids, _NO_LOGIT)  # (B, L, V)
        s_tail = torch.logsumexp(outside, dim=-1) - log_z  # (B, L)
        # The teacher's k + 1 buckets, renormalised: float16 on the wire leaves their sum off 1 by up to ~1e-3.
        p_top, p_tail = teacher_buckets(teacher_logprobs, teacher_tail)  # (B, L, k), (B, L)
        per_pos = -(p_top * s_top).sum(-1) - p_tail * s_tail  # (B, L)
        return _masked_mean(per_pos, mask)


    def of(self, student_logits: torch.Tensor, labels: Labels | None,
           select: torch.Tensor | None = None) -> torch.Tensor | None:
        """The loss against a batch's ``SoftLabels`` (moved to the logits' device; positions past each window's
        length masked); None without labels.

        Args:
            student_logits: (B, L, V) logits of the windows the labels were computed for.
            labels: their soft labels, or None.
            select: (B, L) bool, the positions to distil at (``trainer.selection``); None: every one.
        """
        if labels is None:
            return None
        dev, mask = _placed(labels, SoftLabels, student_logits, "use SampledKDLoss for sampled labels", select)
        return self(student_logits, labels.ids.to(dev), labels.logprobs.to(dev), labels.tail.to(dev), mask)


class SampledKDLoss(nn.Module):
    """The unbiased estimate of full distillation from N draws of the teacher's distribution.

    Per position, ``-sum_i (c_i / N) log q(i)`` over the drawn ids i with their counts c_i; since
    ``E[c_i / N] = p_teacher(i)``, its expectation over the draws is the full-vocabulary cross-entropy
    ``-sum_v p_teacher(v) log q(v)`` (top-k + tail is not: it renormalises the kept mass and loses the
    tail's shape). q is the student's softmax at the temperature the teacher was drawn at.
    """

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = temperature

    def forward(self, student_logits: torch.Tensor, ids: torch.Tensor, counts: torch.Tensor, draws: int,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """Mean sampled KD loss over unmasked positions.

        Args:
            student_logits: (B, L, V) raw student logits.
            ids: (B, L, W) int64 drawn ids; counts: (B, L, W) their draws (0: padding).
            draws: N, the draws per position (each position's counts sum to it).
            mask: (B, L) bool, True where the position counts; None counts every position.

        Returns:
            scalar loss (0 when no position counts).
        """
        logits = _scaled(student_logits, self.temperature)  # (B, L, V)
        log_q = logits.gather(-1, ids) - torch.logsumexp(logits, dim=-1, keepdim=True)  # (B, L, W)
        per_pos = -(counts.to(log_q.dtype) / draws * log_q).sum(-1)  # (B, L)
        return _masked_mean(per_pos, mask)

    def of(self, student_logits: torch.Tensor, labels: Labels | None,
           select: torch.Tensor | None = None) -> torch.Tensor | None:
        """The loss against a batch's ``SampledLabels`` (as ``TopKTailKDLoss.of``); None without labels."""
        if labels is None:
            return None
        dev, mask = _placed(labels, SampledLabels, student_logits, "use TopKTailKDLoss for top-k labels", select)
        return self(student_logits, labels.ids.to(dev), labels.counts.to(dev), labels.draws, mask)


KDLoss = TopKTailKDLoss | SampledKDLoss


def kd_loss_for(kind: LabelKind, temperature: float = 1.0) -> KDLoss:
    """The KD loss of a label kind: ``TopKTailKDLoss`` for top-k, ``SampledKDLoss`` for sampled labels."""
    return SampledKDLoss(temperature) if kind == "sample" else TopKTailKDLoss(temperature)


def teacher_buckets(logprobs: torch.Tensor, tail: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's (..., k) top-k and (...) tail probabilities from their logs, renormalised to sum to 1
    (float16 on the wire leaves them off by up to ~1e-3)."""
    p_top, p_tail = logprobs.float().exp(), tail.float().exp()
    total = p_top.sum(-1) + p_tail
    return p_top / total.unsqueeze(-1), p_tail / total


def _scaled(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """(B, L, V) logits in float32, divided by the temperature."""
    logits = logits.float()
    return logits / temperature if temperature != 1.0 else logits


def _masked_mean(per_pos: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of (B, L) values over the positions ``mask`` keeps (all when None; 0 when none)."""
    if mask is None:
        return per_pos.mean()
    m = mask.to(per_pos.dtype)
    return (per_pos * m).sum() / m.sum().clamp_min(1.0)


def _placed(labels: Labels, kind: type, student_logits: torch.Tensor, fix: str, select: torch.Tensor | None = None
            ) -> tuple[torch.device, torch.Tensor | None]:
    """The logits' device and the labels' length mask there (and ``select``, when given), refusing labels of
    the other kind."""
    if not isinstance(labels, kind):
        raise TypeError(f"this loss takes {kind.__name__}, not {type(labels).__name__}; {fix}")
    dev = student_logits.device
    mask = _length_mask(labels.lengths, labels.ids.shape[1], dev)
    if select is None:
        return dev, mask
    select = select.to(dev)
    return dev, select if mask is None else mask & select


def _length_mask(lengths: torch.Tensor, L: int, device: torch.device) -> torch.Tensor | None:
    """(B, L) True at positions within each window's length; None when every window is full."""
    if not bool((lengths < L).any()):
        return None
    return torch.arange(L, device=device).unsqueeze(0) < lengths.to(device).unsqueeze(1)


def mixed_loss(ce: torch.Tensor, kd: torch.Tensor | None, weight: float) -> torch.Tensor:
    """SALT's phase-one objective ``(1 - w) * CE + w * KD``; plain CE when there is no KD term."""
    if kd is None or weight == 0.0:
        return ce
    return (1.0 - weight) * ce + weight * kd


def next_token_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of (B, L, V) logits against (B, L) targets."""
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
