"""Selection methods and diversity rules on handmade scores and embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from selector_service.domain.methods import SelectionError, SelectionParams, cluster_quotas, kmeans_labels, select

NAN = float("nan")


def pool(n: int, dim: int = 8, seed: int = 0) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    return [f"{i:032x}" for i in range(n)], rng.normal(size=(n, dim)).astype(np.float32)


def test_salt_ds_takes_the_highest_selectable_scores_ties_by_hash() -> None:
    hashes, emb = pool(6)
    salt_ds = np.array([0.5, NAN, 2.0, 1.0, NAN, 1.0])
    loss = np.zeros(6)
    got = select(hashes, loss, salt_ds, emb, SelectionParams("salt_ds", 3))
    assert got.tolist() == [2, 3, 5]  # 2.0, then the tie 1.0/1.0 both fit
    got = select(hashes, loss, salt_ds, emb, SelectionParams("salt_ds", 2))
    assert got.tolist() == [2, 3]  # the tie goes to the smaller hash
    with pytest.raises(SelectionError, match="over the 4 candidates"):
        select(hashes, loss, salt_ds, emb, SelectionParams("salt_ds", 5))  # two are not selectable


def test_loss_band_keeps_the_quantile_band_then_a_seeded_sample() -> None:
    hashes, emb = pool(11)
    loss = np.array([5.0, 1.0, 9.0, 3.0, 7.0, 0.0, 2.0, 8.0, 4.0, 6.0, 10.0])  # quantile of loss v is v/10
    band = {i for i, v in enumerate(loss) if 3.0 <= v <= 9.0}
    p = SelectionParams("loss_band", 7, band_lo=0.3, band_hi=0.9)
    assert set(select(hashes, loss, np.zeros(11), emb, p).tolist()) == band
    a = select(hashes, loss, np.zeros(11), emb, SelectionParams("loss_band", 3, seed=1))
    b = select(hashes, loss, np.zeros(11), emb, SelectionParams("loss_band", 3, seed=1))
    assert a.tolist() == b.tolist() and set(a.tolist()) <= band
    with pytest.raises(SelectionError, match="over the 7 candidates"):
        select(hashes, loss, np.zeros(11), emb, SelectionParams("loss_band", 8))


def test_random_is_seeded_and_budget_bounded() -> None:
    hashes, emb = pool(50)
    z = np.zeros(50)
    a = select(hashes, z, z, emb, SelectionParams("random", 10, seed=3))
    assert a.tolist() == select(hashes, z, z, emb, SelectionParams("random", 10, seed=3)).tolist()
    assert a.tolist() != select(hashes, z, z, emb, SelectionParams("random", 10, seed=4)).tolist()
    assert len(set(a.tolist())) == 10 and a.tolist() == sorted(a.tolist())
    with pytest.raises(SelectionError, match="over the pool's 50"):
        select(hashes, z, z, emb, SelectionParams("random", 51))


def test_cluster_quotas_largest_remainder_capped() -> None:
    assert cluster_quotas(np.array([60, 30, 10]), 20).tolist() == [12, 6, 2]
    assert cluster_quotas(np.array([5, 3, 2]), 5).tolist() == [3, 1, 1]  # 2.5, 1.5, 1.0: remainder to larger
    assert cluster_quotas(np.array([1, 1, 8]), 10).tolist() == [1, 1, 8]
    assert cluster_quotas(np.array([7, 7, 7]), 4).sum() == 4


def clustered(sizes: list[int], dim: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings in tight clusters around orthogonal directions; returns (embeddings, cluster of each)."""
    rng = np.random.default_rng(seed)
    label = np.repeat(np.arange(len(sizes)), sizes)
    emb = np.eye(dim, dtype=np.float32)[label] * 3.0 + rng.normal(scale=0.01, size=(len(label), dim))
    perm = rng.permutation(len(label))
    return emb[perm].astype(np.float32), label[perm]


def test_kmeans_spreads_the_budget_over_clusters_by_size() -> None:
    emb, label = clustered([60, 30, 10])
    n = len(label)
    hashes = [f"{i:032x}" for i in range(n)]
    salt_ds = np.linspace(1.0, 2.0, n)
    p = SelectionParams("salt_ds", 20, diversity="kmeans", n_clusters=3, seed=0)
    got = select(hashes, np.zeros(n), salt_ds, emb, p)
    assert len(got) == 20
    assert np.bincount(label[got], minlength=3).tolist() == [12, 6, 2]
    # Within each cluster the method's order decides: the highest SALT_DS scores of that cluster.
    for c, q in enumerate([12, 6, 2]):
        members = np.flatnonzero(label == c)
        best = members[np.argsort(-salt_ds[members])][:q]
        assert set(got[label[got] == c].tolist()) == set(best.tolist())
    # Without diversity the same budget follows the scores alone.
    plain = select(hashes, np.zeros(n), salt_ds, emb, SelectionParams("salt_ds", 20))
    assert plain.tolist() == list(range(n - 20, n))


def test_kmeans_labels_recover_clear_clusters_and_check_k() -> None:
    emb, label = clustered([40, 25, 15, 20], seed=1)
    x = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    got = kmeans_labels(x.astype(np.float32), 4, seed=0)
    pairs = {(int(a), int(b)) for a, b in zip(label, got, strict=True)}
    assert len(pairs) == 4  # a one-to-one mapping of clusters
    hashes = [f"{i:032x}" for i in range(len(label))]
    with pytest.raises(SelectionError, match="n_clusters"):
        select(hashes, np.zeros(len(label)), np.zeros(len(label)), emb,
               SelectionParams("random", 5, diversity="kmeans", n_clusters=len(label) + 1))


def test_dedup_drops_near_duplicates() -> None:
    rng = np.random.default_rng(0)
    base = np.eye(6, dtype=np.float32)
    # Windows 0..5 distinct; 6..11 are near-copies of them (cosine ~0.9999), scored higher than the originals.
    emb = np.concatenate([base, base * 2 + rng.normal(scale=0.001, size=base.shape).astype(np.float32)])
    hashes = [f"{i:032x}" for i in range(12)]
    salt_ds = np.array([1.0] * 6 + [2.0] * 6)
    got = select(hashes, np.zeros(12), salt_ds, emb, SelectionParams("salt_ds", 6, diversity="dedup"))
    assert got.tolist() == [6, 7, 8, 9, 10, 11]  # each copy first in order; its original is skipped
    plain = select(hashes, np.zeros(12), salt_ds, emb, SelectionParams("salt_ds", 6))
    assert plain.tolist() == [6, 7, 8, 9, 10, 11]
    with pytest.raises(SelectionError, match="near-duplicates"):
        select(hashes, np.zeros(12), salt_ds, emb, SelectionParams("salt_ds", 7, diversity="dedup"))
    # A threshold above 1 removes nothing.
    loose = select(hashes, np.zeros(12), salt_ds, emb,
                   SelectionParams("salt_ds", 12, diversity="dedup", dedup_threshold=1.01))
    assert len(loose) == 12


def test_dedup_prefers_distinct_windows_over_the_method_order() -> None:
    emb = np.array([[1, 0], [1, 0.01], [0, 1], [0.01, 1]], dtype=np.float32)
    hashes = [f"{i:032x}" for i in range(4)]
    salt_ds = np.array([4.0, 3.0, 2.0, 1.0])
    got = select(hashes, np.zeros(4), salt_ds, emb, SelectionParams("salt_ds", 2, diversity="dedup"))
    assert got.tolist() == [0, 2]
    assert select(hashes, np.zeros(4), salt_ds, emb, SelectionParams("salt_ds", 2)).tolist() == [0, 1]
