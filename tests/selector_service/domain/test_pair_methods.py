"""The two-model selection methods on hand-made mean losses whose right answer is known: order, ties by
hash, windows a model has not scored, budgets over the candidates, and difference sampling's draws."""

from __future__ import annotations

import numpy as np
import pytest

from selector_service.domain.methods import SelectionError, SelectionParams, select
from selector_service.domain.pair_methods import difference_order, pair_order
from selector_service.domain.ties import hash_keys

HASHES = [f"{i:032x}" for i in (5, 3, 9, 1, 7, 2)]
NAN = float("nan")


def pick(method: str, losses: dict[str, list[float]], budget: int, **kw: object) -> list[int]:
    n = len(next(iter(losses.values())))
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in losses.items()}
    emb = np.eye(n, dtype=np.float32)
    return select(HASHES[:n], np.zeros(n), np.full(n, np.nan), emb, SelectionParams(method, budget, **kw),
                  losses=arrays).tolist()  # type: ignore[arg-type]


def test_reducible_loss_keeps_the_highest_learner_minus_reference() -> None:
    learner = [3.0, 2.0, 5.0, 1.0, 4.0, 2.5]
    reference = [1.0, 1.9, 4.9, 0.0, 1.0, 0.5]  # reducible: 2.0, 0.1, 0.1, 1.0, 3.0, 2.0
    order = pair_order("reducible_loss", HASHES, {"learner": np.array(learner), "reference": np.array(reference)})
    # 3.0 (pos 4), then the tie at 2.0 by hash (pos 5 ...02 before pos 0 ...05), 1.0, then 0.1 by hash.
    assert order.tolist() == [4, 5, 0, 3, 1, 2]
    assert pick("reducible_loss", {"learner": learner, "reference": reference}, 3) == [0, 4, 5]


def test_a_high_learner_loss_alone_is_not_reducible() -> None:
    # Window 0 is the hardest for the learner but as hard for the reference (noise): it comes last.
    learner, reference = [9.0, 2.0, 3.0], [9.0, 1.0, 1.0]
    assert pick("reducible_loss", {"learner": learner, "reference": reference}, 1) == [2]


def test_conditional_keeps_the_highest_prior_minus_conditional() -> None:
    prior = [2.0, 2.0, 2.0, 2.0]
    conditional = [1.5, 2.5, 0.5, 1.9]  # reduction 0.5, -0.5, 1.5, 0.1
    order = pair_order("conditional", HASHES[:4], {"prior": np.array(prior), "conditional": np.array(conditional)})
    assert order.tolist() == [2, 0, 3, 1]
    assert pick("conditional", {"prior": prior, "conditional": conditional}, 2) == [0, 2]


def test_windows_missing_a_models_loss_are_not_candidates() -> None:
    learner = [3.0, NAN, 5.0, 1.0]
    reference = [1.0, 0.0, NAN, 0.0]
    order = pair_order("reducible_loss", HASHES[:4], {"learner": np.array(learner), "reference": np.array(reference)})
    assert order.tolist() == [0, 3]
    assert pair_order("difference", HASHES[:4], {"teacher": np.array(learner),
                                                 "reference": np.array(reference)}).tolist() in ([0, 3], [3, 0])


def test_a_budget_over_the_candidates_is_refused() -> None:
    losses = {"learner": [3.0, NAN, 5.0], "reference": [1.0, 0.0, 2.0]}
    with pytest.raises(SelectionError, match="over the 2 candidates of method reducible_loss"):
        pick("reducible_loss", losses, 3)
    with pytest.raises(SelectionError, match="over the pool's 3 windows"):
        pick("reducible_loss", losses, 4)
    assert pick("reducible_loss", losses, 2) == [0, 2]


def test_a_two_model_method_without_its_roles_is_refused() -> None:
    with pytest.raises(SelectionError, match="needs the mean losses of models teacher and reference"):
        pick("difference", {"learner": [1.0, 2.0], "reference": [1.0, 1.0]}, 1)


def test_difference_is_seeded_and_draws_without_replacement() -> None:
    gap = np.linspace(-2.0, 2.0, 6)
    a = difference_order(HASHES, gap, seed=7)
    assert a.tolist() == difference_order(HASHES, gap, seed=7).tolist()
    assert sorted(a.tolist()) == list(range(6))  # a permutation: each window drawn once
    others = {tuple(difference_order(HASHES, gap, seed=s).tolist()) for s in range(20)}
    assert len(others) > 5  # sampled, not just the top


def test_difference_draws_in_proportion_to_the_density_ratio() -> None:
    # Weights exp(gap) = 1 : 2 : 4 over three windows: the first draw follows them (1/7, 2/7, 4/7).
    gap = np.log(np.array([1.0, 2.0, 4.0]))
    first = np.array([difference_order(HASHES[:3], gap, seed=s)[0] for s in range(4000)])
    freq = np.bincount(first, minlength=3) / len(first)
    assert np.allclose(freq, [1 / 7, 2 / 7, 4 / 7], atol=0.025), freq
    # The gap is the reference loss minus the teacher's: the window the teacher knows best is favoured.
    losses = {"teacher": np.array([2.0, 1.0, 0.0]), "reference": np.array([2.0, 2.0, 2.0])}
    firsts = [pair_order("difference", HASHES[:3], losses, seed=s)[0] for s in range(300)]
    assert np.bincount(firsts, minlength=3).argmax() == 2


def test_difference_with_equal_gaps_and_a_huge_gap_stays_finite() -> None:
    gap = np.array([1000.0, -1000.0, 0.0])  # exp() would overflow; the keys are taken in log space
    order = difference_order(HASHES[:3], gap, seed=0)
    assert order[0] == 0 and sorted(order.tolist()) == [0, 1, 2]


@pytest.mark.parametrize("diversity", ["kmeans", "dedup"])
def test_diversity_applies_to_two_model_methods(diversity: str) -> None:
    # Three pairs of duplicate windows (0, 1), (2, 3), (4, 5); the top three by reducible loss are 0, 1, 5.
    n = 6
    emb = np.repeat(np.eye(3, dtype=np.float32), 2, axis=0)
    losses = {"learner": np.array([9.0, 8.0, 1.0, 2.0, 3.0, 4.0]), "reference": np.zeros(n)}
    p = SelectionParams("reducible_loss", 3, diversity=diversity, n_clusters=3)  # type: ignore[arg-type]
    chosen = select(HASHES, np.zeros(n), np.full(n, np.nan), emb, p, losses=losses).tolist()
    assert chosen == [0, 3, 5]  # the best of each pair


def test_hash_keys_sort_as_the_hex_strings_do() -> None:
    rng = np.random.default_rng(0)
    hashes = [bytes(rng.integers(0, 256, 16, dtype=np.uint8)).hex() for _ in range(500)]
    hashes += [hashes[0][:16] + "0" * 16, hashes[0][:16] + "f" * 16, "0" * 32, "f" * 32]  # equal high halves
    low, high = hash_keys(hashes)
    assert [hashes[i] for i in np.lexsort((low, high))] == sorted(hashes)
    assert [len(k) for k in hash_keys([])] == [0, 0]
