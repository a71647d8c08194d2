"""KD loss against plain reference implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from shared.sampling import SampledLabels, sample_labels
from tests.reference import sampled_kd_ref, topk_soft_labels
from trainer.losses import SampledKDLoss, TopKTailKDLoss, kd_loss_for, mixed_loss


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


def _bucket_kd_float64(student_logits: torch.Tensor, ids: torch.Tensor, p_top: torch.Tensor,
                       p_tail: torch.Tensor) -> torch.Tensor:
    """The k + 1 bucket cross-entropy in float64, the student's tail summed over the ids outside the top-k."""
    log_q = F.log_softmax(student_logits.double(), dim=-1)  # (B, L, V)
    outside = torch.ones_like(log_q, dtype=torch.bool).scatter(-1, ids, False)
    q_tail = torch.logsumexp(log_q.masked_fill(~outside, float("-inf")), dim=-1)
    return (-(p_top.double() * log_q.gather(-1, ids)).sum(-1) - p_tail.double() * q_tail).mean()


def test_a_tiny_student_tail_keeps_its_exact_value_and_gradient() -> None:
    """The regime where the student's mass outside the teacher's ids is below 1e-6: the tail term is still
    exact and still pushes (a tail computed from the top-k mass alone froze there with no gradient)."""
    torch.manual_seed(0)
    V, k = 50, 4
    ids = torch.stack([torch.randperm(V)[:k] for _ in range(6)]).view(2, 3, k)
    student = torch.full((2, 3, V), -10.0).scatter(-1, ids, 12.0)  # mass outside: about 46 * e^-22 = 1e-8
    s1 = student.clone().requires_grad_()
    s2 = student.clone().requires_grad_()
    p_top = torch.full((2, 3, k), 0.2)
    p_tail = torch.full((2, 3), 0.2)  # the teacher puts a fifth of its mass outside
    ours = TopKTailKDLoss()(s1, ids, p_top.log(), p_tail.log())
    ref = _bucket_kd_float64(s2, ids, p_top, p_tail)
    torch.testing.assert_close(ours.double(), ref, rtol=1e-5, atol=1e-5)
    ours.backward()
    ref.backward()
    assert s1.grad is not None and s2.grad is not None
    outside = torch.ones_like(student, dtype=torch.bool).scatter(-1, ids, False)
    assert (s1.grad[outside] < 0).all()  # raising the outside logits lowers the loss
    torch.testing.assert_close(s1.grad.double(), s2.grad.double(), rtol=1e-3, atol=1e-7)


def test_teacher_buckets_are_renormalised_after_the_wire() -> None:
    """float16 on the wire leaves the buckets' sum off 1: the loss is that of the renormalised buckets."""
    torch.manual_seed(1)
    V, k = 30, 5
    teacher, student = torch.randn(2, 4, V) * 2, torch.randn(2, 4, V)
    ids, lp, tail = topk_soft_labels(teacher, k=k)
    rounded_lp, rounded_tail = lp.half().float() + 1e-3, tail.half().float()  # sum now off by about 1e-3
    p_top, p_tail = rounded_lp.exp(), rounded_tail.exp()
    assert abs(float((p_top.sum(-1) + p_tail).mean()) - 1) > 5e-4
    z = (p_top.sum(-1) + p_tail).unsqueeze(-1)
    got = TopKTailKDLoss()(student, ids, rounded_lp, rounded_tail)
    want = _bucket_kd_float64(student, ids, p_top / z, p_tail / z.squeeze(-1))
    torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-6)


def test_sampled_kd_matches_the_plain_reference_and_masks() -> None:
    torch.manual_seed(3)
    student = torch.randn(2, 4, 20)
    ids = torch.randint(0, 20, (2, 4, 5))
    counts = torch.randint(0, 4, (2, 4, 5))
    draws = 7
    ours = SampledKDLoss(1.5)(student, ids, counts, draws)
    torch.testing.assert_close(ours.double(), sampled_kd_ref(student, ids, counts, draws, 1.5), rtol=1e-5, atol=1e-6)
    mask = torch.tensor([[True, True, False, False], [True, True, True, True]])
    masked = SampledKDLoss(1.5)(student, ids, counts, draws, mask)
    scrambled = student.clone()
    scrambled[0, 2:] = torch.randn(2, 20) * 9
    assert float(SampledKDLoss(1.5)(scrambled, ids, counts, draws, mask)) == pytest.approx(float(masked), rel=1e-6)


def test_sampled_kd_is_unbiased_where_top_k_is_not() -> None:
    """The mean over seeds of the sampled loss is the full cross-entropy; top-k + tail misses it."""
    torch.manual_seed(4)
    teacher = torch.randn(1, 3, 30) * 2
    student = torch.randn(1, 3, 30)
    full = float(full_kd_reference(student, teacher, 1.0))
    n = 3000
    seeds = np.arange(n, dtype=np.uint64) * np.uint64(0x9E3779B1) + np.uint64(11)
    ids, counts = sample_labels(teacher.expand(n, 3, 30), 8, 1.0, seeds)
    per_seed = torch.stack([SampledKDLoss()(student, ids[i : i + 1], counts[i : i + 1], 8) for i in range(n)])
    mean, sem = float(per_seed.mean()), float(per_seed.std() / math.sqrt(n))
    assert abs(mean - full) < 4 * sem + 1e-3
    top_ids, top_lp, tail = topk_soft_labels(teacher, 4)
    assert abs(float(TopKTailKDLoss()(student, top_ids, top_lp, tail)) - full) > 10 * sem
    # The same seeds give the same loss.
    again = sample_labels(teacher.expand(n, 3, 30), 8, 1.0, seeds)
    assert torch.equal(again[0], ids) and torch.equal(again[1], counts)


def test_each_loss_takes_its_own_labels() -> None:
    logits = torch.randn(1, 2, 10)
    sampled = SampledLabels(torch.zeros(1, 2, 1, dtype=torch.long), torch.full((1, 2, 1), 4), torch.tensor([2]),
                            [], draws=4, temperature=1.0)
    assert float(kd_loss_for("sample").of(logits, sampled)) == pytest.approx(
        float(-torch.log_softmax(logits, -1)[..., 0].mean()), rel=1e-6)
    assert isinstance(kd_loss_for("topk"), TopKTailKDLoss)
    with pytest.raises(TypeError, match="SampledKDLoss"):
        TopKTailKDLoss().of(logits, sampled)
    assert SampledKDLoss().of(logits, None) is None
