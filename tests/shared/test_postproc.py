"""The C extension's row statistics against float64 torch references, and both paths of labels_and_scores.

These tests need the extension built (``pip install -e .`` with a C compiler, as the README's set-up does):
without it they fail with the reinstall hint rather than skip.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shared import postproc
from shared.labels import TAIL_FLOOR, labels_and_scores
from tests.reference import topk_soft_labels, window_scores


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def reference_stats(x: torch.Tensor, k: int, t: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(sum, tail, dot) in float64 with torch's top-k ids."""
    x = x.double()
    m = x.amax(-1, keepdim=True)
    e = ((x - m) / t).exp()
    ids = x.topk(k, -1).indices
    outside = e.scatter(-1, ids, 0.0)  # ties at the k-th logit leave the same sum whichever ids are kept
    return e.sum(-1), outside.sum(-1), (((x - m).exp()) * (x - m)).sum(-1)


@pytest.mark.parametrize("V", [7, 16, 40, 1000, 4096])
@pytest.mark.parametrize("k", [1, 10, 32, 256])
def test_row_stats_equal_float64_sums(V: int, k: int, two_threads) -> None:
    if k > V:
        k = V
    torch.manual_seed(V + k)
    x = torch.randn(300, V) * 4  # 300 rows: split over both threads
    st = postproc.row_stats(x, k, [1.0, 0.5])
    ref_val, ref_idx = x.sort(dim=-1, descending=True, stable=True)  # equal logits: lower id first
    assert torch.equal(st.top_idx, ref_idx[:, :k]) and torch.equal(st.top_val, ref_val[:, :k])
    torch.testing.assert_close(st.max, x.amax(-1))
    for j, t in enumerate([1.0, 0.5]):
        s, tail, dot = reference_stats(x, k, t)
        torch.testing.assert_close(st.sum[:, j], s, rtol=1e-5, atol=0)
        torch.testing.assert_close(st.tail[:, j], tail, rtol=1e-5, atol=1e-300)
    torch.testing.assert_close(st.dot, dot, rtol=1e-5, atol=1e-6)


def test_equal_logits_keep_the_lowest_ids_and_the_tail_counts_the_rest() -> None:
    torch.manual_seed(3)
    x = torch.randint(-3, 4, (50, 300)).float()  # 7 distinct values: ties everywhere
    k = 20
    st = postproc.row_stats(x, k, [1.0])
    assert torch.equal(st.top_val, x.topk(k, -1).values)
    for row, val, ids in zip(x, st.top_val, st.top_idx, strict=True):
        assert torch.equal(row[ids], val) and len(set(ids.tolist())) == k
        kth = val[-1].item()
        left_out = [i for i in range(300) if row[i] == kth and i not in set(ids.tolist())]
        kept = [i for i in ids.tolist() if row[i] == kth]
        assert not left_out or max(kept) < min(left_out)  # the lowest ids among equal logits are kept
        for a, b in zip(ids[:-1].tolist(), ids[1:].tolist(), strict=True):
            assert row[a] > row[b] or (row[a] == row[b] and a < b)
    e = (x.double() - x.amax(-1, keepdim=True)).exp()
    inside = e.gather(-1, st.top_idx).sum(-1)
    torch.testing.assert_close(st.tail[:, 0], e.sum(-1) - inside, rtol=1e-6, atol=1e-9)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="float32"):
        postproc.row_stats(torch.zeros(2, 8, dtype=torch.float64), 1, [1.0])
    with pytest.raises(ValueError, match="k"):
        postproc.row_stats(torch.zeros(2, 8), 9, [1.0])
    with pytest.raises(ValueError, match="temperatures"):
        postproc.row_stats(torch.zeros(2, 8), 2, [0.0])


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize(("V", "params"), [
    (1003, [(4, 1.0), (32, 1.0), (8, 0.5), (64, 2.0)]),  # V not a multiple of the C path's block count
    (40, [(4, 1.0), (16, 1.0), (40, 1.0), (8, 0.5)]),  # k = V: no tail
])
def test_both_paths_equal_the_references(native: bool, V: int, params: list[tuple[int, float]], two_threads) -> None:
    torch.manual_seed(1)
    logits = torch.rand(4, 40, V).argsort(-1).float() * (8 / V) - 4  # distinct in each row: one top-k order
    targets = torch.randint(0, V, (4, 40))
    targets[0, :5] = logits[0, :5].argmax(-1)  # some top-1 hits
    hidden = torch.randn(4, 40, 6)
    scores, labels = labels_and_scores(logits, targets, hidden, params, native=native)
    ref = window_scores(logits, targets, hidden)
    for name in ref:
        np.testing.assert_allclose(scores[name], ref[name], rtol=1e-5, atol=1e-6, err_msg=name)
    for k, t in params:
        ids, lp, tail = labels[(k, t)]
        r_ids, r_lp, r_tail = topk_soft_labels(logits, k, t)
        assert torch.equal(ids, r_ids)
        torch.testing.assert_close(lp, r_lp)
        torch.testing.assert_close(tail, r_tail, rtol=1e-4, atol=1e-5)


def test_a_tail_under_the_smallest_normal_is_the_floor() -> None:
    logits = torch.zeros(1, 2, 32)
    logits[0, 0, :4] = 100.0  # the other 28 ids hold e^-100 each: under float32's smallest normal
    logits[0, 1, :4] = 20.0  # e^-20 each: kept
    _, labels = labels_and_scores(logits, torch.zeros(1, 2, dtype=torch.int64), torch.zeros(1, 2, 3),
                                  [(4, 1.0)], native=True)
    _, lp, tail = labels[(4, 1.0)]
    assert tail[0, 0].item() == TAIL_FLOOR
    assert tail[0, 1].item() == pytest.approx(np.log(28) - 20 - np.log(4), abs=1e-4)
    torch.testing.assert_close(lp[0, 0], torch.full((4,), -float(np.log(4))))


def test_rows_of_equal_logits_keep_the_first_ids() -> None:
    # Every logit a candidate: more than the rank-counting bound, so quickselect and insertion sort run.
    x = torch.zeros(3, 4096)
    x[1] = 2.0
    x[2, 100:] = -1.0
    st = postproc.row_stats(x, 32, [1.0])
    assert torch.equal(st.top_idx, torch.arange(32).expand(3, 32))
    expected = torch.tensor([4064.0, 4064.0, 68 + 3996 * np.exp(-1.0)], dtype=torch.float64)
    torch.testing.assert_close(st.tail[:, 0], expected, rtol=1e-5, atol=0)  # float32 sums in 16 lanes
