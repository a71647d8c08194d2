"""The one-pass phase-one loss against the losses computed apart (values and gradients)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shared.labels import SoftLabels
from shared.sampling import SampledLabels, sample_labels
from tests.reference import topk_soft_labels
from trainer.fused_loss import fused_ce, fused_ce_kd, kd_targets
from trainer.losses import SampledKDLoss, TopKTailKDLoss, mixed_loss, next_token_ce

B, L, V = 3, 5, 40


def _topk(teacher: torch.Tensor, k: int, lengths: list[int]) -> SoftLabels:
    ids, lp, tail = topk_soft_labels(teacher, k=k)
    # float16 as on the wire: the buckets no longer sum to 1 exactly
    return SoftLabels(ids, lp.half().float(), tail.half().float(), torch.tensor(lengths), [], k, 1.0)


def _sampled(teacher: torch.Tensor, draws: int, lengths: list[int]) -> SampledLabels:
    seeds = np.arange(teacher.shape[0], dtype=np.uint64) + np.uint64(5)
    ids, counts = sample_labels(teacher, draws, 1.0, seeds)
    for b, n in enumerate(lengths):
        counts[b, n:] = 0
    return SampledLabels(ids, counts, torch.tensor(lengths), [], draws, 1.0)


def _apart(logits: torch.Tensor, targets: torch.Tensor, labels: SoftLabels | SampledLabels,
           weight: float) -> tuple[torch.Tensor, float, float]:
    kd_module = SampledKDLoss() if isinstance(labels, SampledLabels) else TopKTailKDLoss()
    ce, kd = next_token_ce(logits, targets), kd_module.of(logits, labels)
    assert kd is not None
    return mixed_loss(ce, kd, weight), float(ce.detach()), float(kd.detach())


def _both(student: torch.Tensor, labels: SoftLabels | SampledLabels, weight: float, targets: torch.Tensor):  # type: ignore[no-untyped-def]
    s1, s2 = student.clone().requires_grad_(), student.clone().requires_grad_()
    got = fused_ce_kd(s1, targets, kd_targets(labels, s1.device), weight)
    want = _apart(s2, targets, labels, weight)
    (got[0] * 0.5).backward()  # a scale on the loss, as gradient accumulation applies
    (want[0] * 0.5).backward()
    assert s1.grad is not None and s2.grad is not None
    return got, want, s1.grad, s2.grad


@pytest.mark.parametrize("k", [1, 6, V])
@pytest.mark.parametrize("weight", [0.0, 0.5, 1.0])
def test_top_k_labels_give_the_loss_and_gradient_computed_apart(k: int, weight: float) -> None:
    torch.manual_seed(k)
    teacher, student = torch.randn(B, L, V) * 2, torch.randn(B, L, V) * 1.5
    targets = torch.randint(0, V, (B, L))
    got, want, g1, g2 = _both(student, _topk(teacher, k, [L, 3, 1]), weight, targets)
    torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=1e-6)
    assert got[1] == pytest.approx(want[1], rel=1e-5) and got[2] == pytest.approx(want[2], rel=1e-4, abs=1e-6)
    torch.testing.assert_close(g1, g2, rtol=1e-4, atol=1e-7)


def test_sampled_labels_give_the_loss_and_gradient_computed_apart() -> None:
    torch.manual_seed(2)
    teacher, student = torch.randn(B, L, V) * 2, torch.randn(B, L, V)
    targets = torch.randint(0, V, (B, L))
    got, want, g1, g2 = _both(student, _sampled(teacher, 16, [L, L, 2]), 0.4, targets)
    torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=1e-6)
    assert got[2] == pytest.approx(want[2], rel=1e-5)
    torch.testing.assert_close(g1, g2, rtol=1e-4, atol=1e-7)


def test_a_tiny_student_tail_keeps_its_value_and_gradient() -> None:
    """The student's mass outside the teacher's ids about 1e-8: still exact, still pushing outward."""
    torch.manual_seed(0)
    k = 4
    labels = _topk(torch.randn(B, L, V), k, [L] * B)
    student = torch.full((B, L, V), -10.0).scatter(-1, labels.ids, 12.0)
    targets = labels.ids[..., 0]
    got, want, g1, g2 = _both(student, labels, 1.0, targets)
    torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=1e-5)
    outside = torch.ones_like(student, dtype=torch.bool).scatter(-1, labels.ids, False)
    assert (g1[outside] < 0).all()
    torch.testing.assert_close(g1, g2, rtol=1e-3, atol=1e-9)


def test_bfloat16_logits_get_a_bfloat16_gradient_close_to_float32() -> None:
    torch.manual_seed(4)
    labels = _topk(torch.randn(B, L, V) * 2, 8, [L] * B)
    student = torch.randn(B, L, V)
    targets = torch.randint(0, V, (B, L))
    s16 = student.bfloat16().requires_grad_()
    loss, _, _ = fused_ce_kd(s16, targets, kd_targets(labels, s16.device), 0.5)
    loss.backward()
    assert s16.grad is not None and s16.grad.dtype == torch.bfloat16
    _, _, g32, _ = _both(student.bfloat16().float(), labels, 0.5, targets)
    torch.testing.assert_close(s16.grad.float(), g32 * 2, rtol=2e-2, atol=1e-4)


def test_selected_positions_alone_are_distilled() -> None:
    torch.manual_seed(5)
    labels = _topk(torch.randn(B, L, V), 5, [L] * B)
    student, targets = torch.randn(B, L, V), torch.randint(0, V, (B, L))
    select = torch.zeros(B, L, dtype=torch.bool)
    select[0, :2] = True
    _, _, kd = fused_ce_kd(student, targets, kd_targets(labels, student.device), 0.5, select)
    only = SoftLabels(labels.ids[:1, :2], labels.logprobs[:1, :2], labels.tail[:1, :2], torch.tensor([2]), [], 5,
                      1.0)
    assert kd == pytest.approx(float(TopKTailKDLoss().of(student[:1, :2], only)), rel=1e-5)  # type: ignore[arg-type]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cross_entropy_alone_matches_autograd_s(dtype: torch.dtype) -> None:
    torch.manual_seed(7)
    logits = (torch.randn(B, L, V) * 3).to(dtype)
    targets = torch.randint(0, V, (B, L))
    ref = logits.clone().requires_grad_()
    want = next_token_ce(ref, targets)
    want.backward()
    got_in = logits.clone().requires_grad_()
    got, value = fused_ce(got_in, targets)
    got.backward()
    assert got_in.grad is not None and ref.grad is not None and got_in.grad.dtype == dtype
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    assert value == pytest.approx(float(want.detach()), rel=1e-6)
    torch.testing.assert_close(got_in.grad.float(), ref.grad.float(), rtol=1e-2 if dtype == torch.bfloat16 else 1e-5,
                               atol=1e-7)
