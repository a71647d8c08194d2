"""Sampled soft labels: against the one-draw-at-a-time reference, deterministic per window, unbiased."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shared import sampling
from shared.hashing import window_hash
from shared.sampling import MAX_DRAWS, draw_uniforms, sample_labels, seed_of, trim
from tests.reference import sampled_labels_ref


def _seeds(n: int) -> np.ndarray:
    return np.array([seed_of(window_hash(np.arange(i, i + 5))) for i in range(n)], dtype=np.uint64)


def test_matches_reference_and_counts_sum_to_draws() -> None:
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 40) * 2
    seeds = _seeds(3)
    ids, counts = sample_labels(logits, 16, 1.5, seeds)
    assert ids.shape == counts.shape == (3, 4, 16)
    assert torch.all(counts.sum(-1) == 16)
    ref = sampled_labels_ref(logits, 16, 1.5, [int(s) for s in seeds])
    for b in range(3):
        for pos in range(4):
            n = int((counts[b, pos] > 0).sum())
            got = list(zip(ids[b, pos, :n].tolist(), counts[b, pos, :n].tolist(), strict=True))
            assert got == ref[b][pos]
            assert torch.all(counts[b, pos, n:] == 0) and torch.all(ids[b, pos, n:] == 0)


def test_two_step_search_matches_the_whole_row_scan_across_blocks_and_zero_mass() -> None:
    torch.manual_seed(3)
    logits = torch.randn(2, 5, 203) * 4  # 4 blocks of 64 ids, the last one padded
    logits[0, :, 64:128] = -float("inf")  # a whole block without mass
    logits[1, :, 150:] = -float("inf")  # no mass from the middle of a block to the end of the row
    seeds = _seeds(2)
    ids, counts = sample_labels(logits, 64, 1.0, seeds)
    ref = sampled_labels_ref(logits, 64, 1.0, [int(s) for s in seeds])
    for b in range(2):
        for pos in range(5):
            n = int((counts[b, pos] > 0).sum())
            assert list(zip(ids[b, pos, :n].tolist(), counts[b, pos, :n].tolist(), strict=True)) == ref[b][pos]
    first = ids[0][counts[0] > 0]
    assert not torch.any((first >= 64) & (first < 128))
    assert not torch.any(ids[1][counts[1] > 0] >= 150)


def test_rounding_past_the_end_of_the_row_lands_on_an_id_with_mass() -> None:
    p = torch.zeros(1, 130)
    p[0, 70] = 0.25
    p[0, 75] = 0.75  # the last id with mass; ids 76-129 and the padding have none
    u = torch.tensor([[0.0, 0.2, 0.3, 1.0 - 2**-53, 1.5]], dtype=torch.float64)  # 1.5: past the end on purpose
    assert sampling.inverse_cdf(p, u).tolist() == [[70, 70, 75, 75, 75]]


def test_a_window_gets_the_same_draws_in_any_batch() -> None:
    torch.manual_seed(1)
    logits = torch.randn(4, 6, 30)
    seeds = _seeds(4)
    ids, counts = sample_labels(logits, 32, 1.0, seeds)
    alone_ids, alone_counts = sample_labels(logits[2:3], 32, 1.0, seeds[2:3])
    assert torch.equal(ids[2:3], alone_ids) and torch.equal(counts[2:3], alone_counts)
    again = sample_labels(logits, 32, 1.0, seeds)
    assert torch.equal(again[0], ids) and torch.equal(again[1], counts)
    other = sample_labels(logits, 32, 1.0, seeds + np.uint64(1))
    assert not torch.equal(other[0], ids)  # another seed, other draws


def test_frequencies_are_unbiased() -> None:
    torch.manual_seed(2)
    logits = torch.randn(1, 1, 12) * 1.5
    p = torch.softmax(logits.double() / 2.0, -1)[0, 0]
    freq = torch.zeros(12, dtype=torch.float64)
    seeds = np.arange(2000, dtype=np.uint64) * np.uint64(7919)
    ids, counts = sample_labels(logits.expand(2000, 1, 12), 8, 2.0, seeds)
    freq.scatter_add_(0, ids.flatten(), counts.flatten().double())
    freq /= 2000 * 8
    torch.testing.assert_close(freq, p, atol=0.01, rtol=0)


def test_uniforms_are_uniform_and_zero_mass_is_never_drawn() -> None:
    u = draw_uniforms(np.array([1, 2], dtype=np.uint64), 50, 40)
    assert u.shape == (2, 50, 40) and u.min() >= 0 and u.max() < 1
    assert abs(u.mean() - 0.5) < 0.02 and len(np.unique(u)) == u.size
    logits = torch.full((1, 2, 6), -1e9)
    logits[..., 3] = 0.0
    ids, counts = sample_labels(logits, 10, 1.0, np.array([5], dtype=np.uint64))
    assert torch.all(ids[..., 0] == 3) and torch.all(counts[..., 0] == 10) and torch.all(counts[..., 1:] == 0)


def test_draws_bounded_and_trim_keeps_the_widest_position() -> None:
    with pytest.raises(ValueError):
        sample_labels(torch.zeros(1, 1, 4), MAX_DRAWS + 1, 1.0, np.zeros(1, dtype=np.uint64))
    ids = np.array([[5, 7, 0], [2, 0, 0]])
    counts = np.array([[3, 1, 0], [4, 0, 0]])
    t_ids, t_counts = trim(ids, counts)
    assert t_ids.tolist() == [[5, 7], [2, 0]] and t_counts.tolist() == [[3, 1], [4, 0]]


def test_positions_drawn_a_few_at_a_time_give_the_same_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(5)
    logits = torch.randn(2, 7, 50)
    seeds = _seeds(2)
    whole = sample_labels(logits, 20, 1.0, seeds)
    monkeypatch.setattr(sampling, "_CHUNK_ELEMENTS", 150)  # 3 positions per CDF chunk
    chunked = sample_labels(logits, 20, 1.0, seeds)
    assert torch.equal(whole[0], chunked[0]) and torch.equal(whole[1], chunked[1])
