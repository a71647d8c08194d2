"""Token-selective KD: the mask on hand-made labels, and a selective step against a plain reference by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from shared.labels import TAIL_FLOOR, SoftLabels
from shared.sampling import SampledLabels
from trainer.losses import TopKTailKDLoss
from trainer.recipe.step import micro_loss
from trainer.selection import kd_positions, teacher_token_loss


def labels_of(ids: list[list[list[int]]], probs: list[list[list[float]]], lengths: list[int] | None = None
              ) -> SoftLabels:
    """Top-k labels from probabilities; the tail is the rest of the mass (or none when it is 0)."""
    p = torch.tensor(probs, dtype=torch.float64)
    rest = (1.0 - p.sum(-1)).clamp_min(0.0)
    tail = torch.where(rest > 0, rest.clamp_min(1e-300).log(), torch.tensor(TAIL_FLOOR, dtype=torch.float64))
    B, L, k = p.shape
    return SoftLabels(torch.tensor(ids), p.log().float(), tail.float(),
                      torch.tensor(lengths or [L] * B), [], k, 1.0)


# Three positions, k = 2; true next tokens 7 (second of the top-k), 9 (outside it), 3 (first).
LABELS = labels_of([[[5, 7], [1, 2], [3, 4]]], [[[0.8, 0.1], [0.5, 0.4], [0.4, 0.3]]])
TARGETS = torch.tensor([[7, 9, 3]])


def test_teacher_loss_is_the_log_prob_in_the_top_k_and_the_tail_outside() -> None:
    # -log 0.1 = 2.303, -log(1 - 0.9) = 2.303 (tail bound), -log 0.4 = 0.916.
    assert teacher_token_loss(LABELS, TARGETS)[0].tolist() == pytest.approx(
        [-math.log(0.1), -math.log(0.1), -math.log(0.4)], rel=1e-5)


def test_topk_selection_keeps_positions_whose_true_token_is_in_the_top_k() -> None:
    assert kd_positions(LABELS, TARGETS, "topk", 0.0).tolist() == [[True, False, True]]


def test_loss_selection_keeps_positions_under_the_bound() -> None:
    assert kd_positions(LABELS, TARGETS, "loss", 2.0).tolist() == [[False, False, True]]
    assert kd_positions(LABELS, TARGETS, "loss", 2.5).tolist() == [[True, True, True]]
    # An empty tail (the top-k holds all the mass) gives a token outside it no chance: never selected.
    full = labels_of([[[1, 2]]], [[[0.5, 0.5]]])
    assert kd_positions(full, torch.tensor([[3]]), "loss", 100.0).tolist() == [[False]]


def test_no_selection_or_no_labels_is_every_position() -> None:
    assert kd_positions(LABELS, TARGETS, "none", 0.0) is None
    assert kd_positions(None, TARGETS, "topk", 0.0) is None


def test_sampled_labels_select_by_the_drawn_ids_and_their_share() -> None:
    # 10 draws per position; true tokens 7 (drawn 1 of 10), 9 (not drawn), 3 (drawn 6 of 10); 0 pads.
    sampled = SampledLabels(torch.tensor([[[5, 7], [1, 0], [3, 4]]]), torch.tensor([[[9, 1], [10, 0], [6, 4]]]),
                            torch.tensor([3]), [], 10, 1.0)
    assert kd_positions(sampled, TARGETS, "topk", 0.0).tolist() == [[True, False, True]]
    # Estimated losses -log 0.1 = 2.30, inf, -log 0.6 = 0.51.
    assert kd_positions(sampled, TARGETS, "loss", 2.0).tolist() == [[False, False, True]]
    assert kd_positions(sampled, TARGETS, "loss", 2.4).tolist() == [[True, False, True]]
    # A padding slot (count 0) holding the true id is not a draw.
    assert kd_positions(sampled, torch.tensor([[7, 0, 3]]), "topk", 0.0).tolist() == [[True, False, True]]


class Bigram(nn.Module):
    """A tiny model: each token's logits are a row of a table."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.table = nn.Parameter(torch.randn(vocab, vocab))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.table[x]


def test_a_selective_step_equals_a_plain_reference() -> None:
    """(1 - w) * CE over every position + w * KD averaged over the selected positions only, written out."""
    model = Bigram(10)
    windows = torch.tensor([[0, 7, 9, 3]])  # inputs 0, 7, 9; targets 7, 9, 3 (as TARGETS)
    w = 0.3
    loss, ce, kd = micro_loss(model, windows, LABELS, w, TopKTailKDLoss(), "topk", 0.0)
    log_q = torch.log_softmax(model.table[windows[0, :-1]].detach().double(), dim=-1)  # (3, V)
    ce_ref = -sum(float(log_q[i, t]) for i, t in enumerate([7, 9, 3])) / 3
    kd_per_pos = []
    for i in (0, 2):  # the selected positions
        ids, p = LABELS.ids[0, i].tolist(), LABELS.logprobs[0, i].double().exp().tolist()
        p_tail = 1.0 - sum(p)
        q_tail = 1.0 - sum(math.exp(float(log_q[i, v])) for v in ids)
        kd_per_pos.append(-sum(pv * float(log_q[i, v]) for v, pv in zip(ids, p, strict=True))
                          - p_tail * math.log(q_tail))
    kd_ref = sum(kd_per_pos) / 2
    assert ce == pytest.approx(ce_ref, rel=1e-5)
    assert kd == pytest.approx(kd_ref, rel=1e-4)
    assert float(loss.detach()) == pytest.approx((1 - w) * ce_ref + w * kd_ref, rel=1e-4)
    # Without selection the KD term averages all three positions: a different value.
    _, _, kd_all = micro_loss(model, windows, LABELS, w, TopKTailKDLoss())
    assert kd_all is not None and abs(kd_all - kd_ref) > 1e-3


def test_selection_and_window_lengths_combine() -> None:
    """A padded position stays out even when selected; no selected position leaves KD at 0."""
    model = Bigram(10)
    short = labels_of([[[5, 7], [1, 2], [3, 4]]], [[[0.8, 0.1], [0.5, 0.4], [0.4, 0.3]]], lengths=[2])
    windows = torch.tensor([[0, 7, 9, 3]])
    _, _, kd_short = micro_loss(model, windows, short, 0.5, TopKTailKDLoss(), "topk", 0.0)  # position 0 only
    logits = model(windows[:, :-1]).detach()
    only_first = TopKTailKDLoss().of(logits, LABELS, torch.tensor([[True, False, False]]))
    assert kd_short == pytest.approx(float(only_first))
    none = TopKTailKDLoss().of(logits, LABELS, torch.zeros(1, 3, dtype=torch.bool))
    assert none is not None and float(none) == 0.0
    # Away from temperature 1 the step takes the unfused loss: the selection reaches it too.
    _, _, kd_t2 = micro_loss(model, windows, LABELS, 0.5, TopKTailKDLoss(2.0), "topk", 0.0)
    assert kd_t2 == pytest.approx(float(TopKTailKDLoss(2.0).of(logits, LABELS, torch.tensor([[True, False, True]]))))
