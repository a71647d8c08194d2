"""Losses: next-token cross-entropy and top-k + tail knowledge distillation.

Shapes: B = batch, L = predicted positions, V = vocabulary, k = teacher ids kept per position.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class TopKTailKDLoss(nn.Module):
    """Cross-entropy between the teacher's k + 1 buckets and the student's.

    The teacher gives, per position, its top-k ids with their log-probs and the log of the remaining
    mass (the tail). The student's distribution is collapsed onto the same buckets: its probability of
    each of the teacher's ids, and its mass outside them. With k = V the tail is empty and the loss is
    exactly the full-vocabulary distillation loss ``-sum_v p_teacher(v) log p_student(v)``.

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
        logits = student_logits.float()  # (B, L, V)
        if self.temperature != 1.0:
            logits = logits / self.temperature
        log_z = torch.logsumexp(logits, dim=-1)  # (B, L)
        s_top = logits.gather(-1, teacher_ids) - log_z.unsqueeze(-1)  # (B, L, k)
        # Student tail: log(1 - P_top) from the top-k mass alone, so no second pass over the vocabulary.
        # log1mexp is exact where it matters (a tail below ~1e-6 carries no weight); the clamp keeps an
        # empty tail (k = V) finite with a zero gradient, which its zero teacher mass cancels anyway.
        s_tail = _log1mexp(torch.logsumexp(s_top, dim=-1).clamp(max=-1e-6))  # (B, L)
        p_top = teacher_logprobs.float().exp()  # (B, L, k)
        p_tail = teacher_tail.float().exp()  # (B, L)
        per_pos = -(p_top * s_top).sum(-1) - p_tail * s_tail  # (B, L)
        if mask is None:
            return per_pos.mean()
        m = mask.to(per_pos.dtype)
        return (per_pos * m).sum() / m.sum().clamp_min(1.0)


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, accurate on both sides of -log 2."""
    return torch.where(x > -0.6931471805599453, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def mixed_loss(ce: torch.Tensor, kd: torch.Tensor | None, weight: float) -> torch.Tensor:
    """SALT's phase-one objective ``(1 - w) * CE + w * KD``; plain CE when there is no KD term."""
    if kd is None or weight == 0.0:
        return ce
    return (1.0 - weight) * ce + weight * kd


def next_token_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of (B, L, V) logits against (B, L) targets."""
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
