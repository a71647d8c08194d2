"""KD loss against plain reference implementations; schedule boundaries."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from shared.softlabels import topk_soft_labels
from trainer.losses import TopKTailKDLoss, mixed_loss
from trainer.schedule import kd_weight_at


def full_kd_reference(student_logits: torch.Tensor, teacher_logits: torch.Tensor, t: float) -> torch.Tensor:
    """-sum_v p_teacher(v) log p_student(v), averaged over positions (full vocabulary)."""
    p = F.softmax(teacher_logits / t, dim=-1)
    log_q = F.log_softmax(student_logits / t, dim=-1)
    return -(p * log_q).sum(-1).mean()


def bucket_kd_reference(student_logits, ids, logprobs, tail, mask, t):  # type: ignore[no-untyped-def]
    """Plain loops: k + 1 buckets per position, masked positions skipped."""
    B, L, V = student_logits.shape
    total, count = 0.0, 0
    for b in range(B):
        for pos in range(L):
            if mask is not None and not mask[b, pos]:
                continue
            q = [math.exp(x) for x in (student_logits[b, pos] / t).tolist()]
            z = sum(q)
            q = [x / z for x in q]
            top = ids[b, pos].tolist()
            q_tail = sum(q[v] for v in range(V) if v not in top)
            loss = -sum(math.exp(lp) * math.log(q[v]) for v, lp in zip(top, logprobs[b, pos].tolist(), strict=True))
            loss -= math.exp(float(tail[b, pos])) * math.log(q_tail)
            total += loss
            count += 1
    return total / count


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_k_equal_vocab_is_full_distillation(temperature: float) -> None:
    torch.manual_seed(0)
    V = 11
    teacher = torch.randn(2, 5, V) * 3
    s1 = (torch.randn(2, 5, V) * 2).requires_grad_()
    s2 = s1.detach().clone().requires_grad_()
    ids, lp, tail = topk_soft_labels(teacher, k=V, temperature=temperature)
    ours = TopKTailKDLoss(temperature)(s1, ids, lp, tail)
    ref = full_kd_reference(s2, teacher, temperature)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    ours.backward()
    ref.backward()
    assert s1.grad is not None and s2.grad is not None
    assert torch.isfinite(s1.grad).all()
    torch.testing.assert_close(s1.grad, s2.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("k", [1, 3, 7])
def test_topk_matches_reference_with_mask(k: int) -> None:
    torch.manual_seed(k)
    V = 9
    teacher = torch.randn(2, 4, V) * 2
    student = torch.randn(2, 4, V)
    mask = torch.tensor([[True, False, True, True], [False, True, True, False]])
    ids, lp, tail = topk_soft_labels(teacher, k=k, temperature=1.5)
    ours = TopKTailKDLoss(1.5)(student, ids, lp, tail, mask)
    ref = bucket_kd_reference(student, ids, lp, tail, mask, 1.5)
    assert float(ours) == pytest.approx(ref, rel=1e-5)
    # Masked positions do not matter: scrambling them leaves the loss unchanged.
    scrambled = student.clone()
    scrambled[~mask] = torch.randn_like(scrambled[~mask]) * 10
    assert float(TopKTailKDLoss(1.5)(scrambled, ids, lp, tail, mask)) == pytest.approx(float(ours), rel=1e-6)


def test_student_equal_to_teacher_minimises_the_loss() -> None:
    torch.manual_seed(1)
    teacher = torch.randn(1, 3, 13)
    ids, lp, tail = topk_soft_labels(teacher, k=4)
    at_teacher = float(TopKTailKDLoss()(teacher, ids, lp, tail))
    for _ in range(5):
        other = teacher + torch.randn_like(teacher)
        assert float(TopKTailKDLoss()(other, ids, lp, tail)) > at_teacher


def test_mixed_loss() -> None:
    ce, kd = torch.tensor(2.0), torch.tensor(4.0)
    assert float(mixed_loss(ce, kd, 0.5)) == 3.0
    assert float(mixed_loss(ce, kd, 0.0)) == 2.0
    assert float(mixed_loss(ce, None, 0.5)) == 2.0


def test_kd_schedule_step() -> None:
    kw = dict(weight=0.5, n_kd=10, transition="step")
    assert kd_weight_at(0, **kw) == 0.5
    assert kd_weight_at(9, **kw) == 0.5
    assert kd_weight_at(10, **kw) == 0.0
    assert kd_weight_at(1000, **kw) == 0.0


def test_kd_schedule_linear() -> None:
    kw = dict(weight=0.5, n_kd=10, transition="linear", transition_steps=4)
    assert [kd_weight_at(s, **kw) for s in range(9, 16)] == pytest.approx([0.5, 0.5, 0.375, 0.25, 0.125, 0.0, 0.0])


def test_kd_schedule_rejects_unknown_transition() -> None:
    with pytest.raises(ValueError, match="unknown transition"):
        kd_weight_at(0, weight=0.5, n_kd=1, transition="cosine")
