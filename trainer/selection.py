"""Token-selective KD: the positions where the SLM is likely right, the only ones phase one distils at.

``kd_select topk`` keeps a position when the SLM's top-k ids hold the true next token; ``kd_select loss``
when the SLM's loss on the true token is under a bound: its log-prob when the token is among its top-k,
else the tail's (the token's probability is at most the tail mass, so ``-tail`` is the least the loss can
be). Cross-entropy still counts at every position; the mask goes to the KD loss only (``KDLoss.of``).

With sampled labels (``kd_labels sample``) the drawn ids stand for the top-k: ``topk`` keeps a position
whose true token was drawn at least once, and ``loss`` estimates the SLM's loss from its share of the
draws, ``-log(count / draws)`` (a token never drawn counts as an infinite loss: never kept).

Shapes: B = windows, L = predicted positions, k = teacher ids per position.
"""

from __future__ import annotations

import math

import torch

from shared.labels import SoftLabels
from shared.sampling import SampledLabels
from trainer.config.choices import KDSelect


def teacher_token_loss(labels: SoftLabels, targets: torch.Tensor) -> torch.Tensor:
    """(B, L) float32: the SLM's loss on each true next token (in its top-k: -log-prob; else: -tail).

    Args:
        labels: top-k soft labels of the windows.
        targets: (B, L) int64 true next tokens.
    """
    ids = labels.ids.to(targets.device)
    hit = ids == targets.unsqueeze(-1)  # (B, L, k)
    in_top = hit.any(-1)  # (B, L)
    logprobs = labels.logprobs.to(targets.device).float()
    top_lp = (logprobs * hit).sum(-1)  # (B, L): the target's log-prob where it is in the top-k (ids are unique)
    return torch.where(in_top, -top_lp, -labels.tail.to(targets.device).float())


def kd_positions(labels: SoftLabels | SampledLabels | None, targets: torch.Tensor, select: KDSelect,
                 max_loss: float) -> torch.Tensor | None:
    """(B, L) bool: where KD counts under ``select``; None for every position (``none``, or no labels).

    Args:
        labels: the micro-batch's soft labels (top-k for ``topk`` and ``loss``).
        targets: (B, L) int64 true next tokens.
        select: none, topk or loss.
        max_loss: the bound of ``loss``, in nats (a position counts when the SLM's loss is under it).
    """
    if select == "none" or labels is None:
        return None
    if isinstance(labels, SampledLabels):
        return _drawn_positions(labels, targets, select, max_loss)
    if select == "topk":
        return (labels.ids.to(targets.device) == targets.unsqueeze(-1)).any(-1)
    return teacher_token_loss(labels, targets) < max_loss


def _drawn_positions(labels: SampledLabels, targets: torch.Tensor, select: KDSelect, max_loss: float) -> torch.Tensor:
    """``kd_positions`` of sampled labels: the true token drawn (``topk``), or its share of the draws above
    ``exp(-max_loss)`` (``loss``)."""
    hit = (labels.ids.to(targets.device) == targets.unsqueeze(-1)) & (labels.counts.to(targets.device) > 0)
    if select == "topk":
        return hit.any(-1)
    share = (labels.counts.to(targets.device) * hit).sum(-1).double() / labels.draws  # (B, L)
    return share > math.exp(-max_loss)
