"""The soft-label and score math against plain references (and the references against hand computation)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from shared.labels import TAIL_FLOOR
from tests.reference import topk_soft_labels, window_scores


def test_topk_matches_reference_and_tail_is_remaining_mass() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 50) * 3
    ids, lp, tail = topk_soft_labels(logits, k=8, temperature=2.0)
    probs = torch.softmax(logits / 2.0, dim=-1)
    ref_p, ref_ids = probs.sort(dim=-1, descending=True)
    assert torch.equal(ids, ref_ids[..., :8])
    torch.testing.assert_close(lp, ref_p[..., :8].log())
    torch.testing.assert_close(tail.exp(), 1 - ref_p[..., :8].sum(-1), atol=1e-6, rtol=1e-5)
    assert torch.all(lp[..., :-1] >= lp[..., 1:])


def test_full_vocab_tail_is_floored_and_exact_when_mass_is_tiny() -> None:
    logits = torch.randn(1, 3, 16)
    _, lp, tail = topk_soft_labels(logits, k=16)
    assert torch.all(tail == TAIL_FLOOR)
    torch.testing.assert_close(lp.exp().sum(-1), torch.ones(1, 3))
    # Almost all mass in the top-1: log1p(-p_top) would round to -inf, the logsumexp does not.
    peaked = torch.zeros(1, 1, 4)
    peaked[0, 0, 0] = 40.0
    _, _, tail = topk_soft_labels(peaked, k=1)
    assert tail.item() == pytest.approx(math.log(3) - 40.0, abs=1e-4)


def test_k_and_temperature_are_checked() -> None:
    with pytest.raises(ValueError):
        topk_soft_labels(torch.zeros(1, 1, 4), k=5)
    with pytest.raises(ValueError):
        topk_soft_labels(torch.zeros(1, 1, 4), k=2, temperature=0)


def test_scores_and_salt_ds_by_hand() -> None:
    # Vocabulary of 12; 4 positions. The true token's rank decides whether it is in the top-10.
    V = 12
    logits = torch.zeros(1, 4, V)
    logits[0, :, :] = torch.arange(V, dtype=torch.float32).flip(0)  # id 0 most likely, id 11 least
    targets = torch.tensor([[0, 3, 11, 10]])  # ranks 1, 4, 12, 11: first two are in the top-10
    hidden = torch.arange(4 * 2, dtype=torch.float32).view(1, 4, 2)
    s = window_scores(logits, targets, hidden)
    logp = torch.log_softmax(logits[0, 0].double(), -1)
    losses = [-logp[t].item() for t in (0, 3, 11, 10)]
    assert s["n_tokens"][0] == 4
    assert s["mean_loss"][0] == pytest.approx(sum(losses) / 4)
    assert s["median_loss"][0] == pytest.approx((sorted(losses)[1] + sorted(losses)[2]) / 2)
    assert s["top1_acc"][0] == pytest.approx(0.25)
    entropy = -(logp.exp() * logp).sum().item()
    assert s["mean_entropy"][0] == pytest.approx(entropy, rel=1e-5)
    assert s["salt_ds"][0] == pytest.approx((losses[0] + losses[1]) / 2)  # median of the two in the top-10
    np.testing.assert_array_equal(s["embedding"][0], np.array([3.0, 4.0], dtype=np.float16))


def test_salt_ds_is_nan_when_no_target_in_top10() -> None:
    logits = torch.zeros(1, 3, 20)
    logits[0, :, :10] = 5.0
    s = window_scores(logits, torch.tensor([[15, 16, 17]]), torch.zeros(1, 3, 4))
    assert math.isnan(s["salt_ds"][0])
