"""Selection methods that compare two models' mean losses on the same windows: pure functions, numpy in,
an order of candidate positions out (diversity then takes the budget from that order, as for the others).

Each takes the per-window mean token loss (nats) of its two models by role (``METHOD_ROLES``). A window
missing either loss (NaN) is not a candidate. Ties are broken by window hash, so an order never depends
on row order.

- ``reducible_loss`` (RHO-LOSS, Mindermann et al., ICML 2022): highest ``learner - reference`` loss
  first. The learner's loss minus the "irreducible" loss of a model trained on held-out data: windows
  the learner has not learnt yet but that are learnable.
- ``conditional`` (CoLoR-Filter, Brandfonbrener et al., 2024): highest ``prior - conditional`` loss
  first: the windows whose likelihood rises most when the prior model is fine-tuned on target data.
- ``difference`` (MiniPLM's difference sampling, Gu et al., ICLR 2025): a seeded weighted random order,
  i.e. sampling without replacement. With the gap ``g = reference - teacher`` loss (the teacher's
  per-token log-likelihood minus the reference's), window i gets weight ``w_i = exp(g_i)``: the
  per-token geometric mean of the density ratio p_teacher(x) / p_reference(x). The order sorts the
  Efraimidis-Spirakis keys ``log(E_i) - g_i`` ascending, with E_i ~ Exp(1) drawn from ``seed``: taking
  the first k of that order draws k windows without replacement, each next one with probability
  proportional to its weight among those left. Windows the teacher knows better than the reference are
  favoured without being the only ones taken.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from selector_service.domain.ties import hash_keys
from shared.selection import METHOD_ROLES


def pair_order(method: str, hashes: list[str], losses: Mapping[str, np.ndarray], seed: int = 0) -> np.ndarray:
    """Candidate positions of a two-model method, in its order of preference.

    Args:
        method: ``reducible_loss``, ``difference`` or ``conditional``.
        hashes: (N,) window hashes (the tie-break).
        losses: (N,) per-window mean loss of each of the method's roles (NaN: not scored).
        seed: seeds ``difference``'s draws (the others ignore it).

    Raises:
        KeyError: a role of the method is not in ``losses``.
    """
    first, second = METHOD_ROLES[method]
    a = np.asarray(losses[first], dtype=np.float64)
    b = np.asarray(losses[second], dtype=np.float64)
    if method == "difference":
        return difference_order(hashes, b - a, seed)
    return highest_first(hashes, a - b)  # reducible_loss, conditional


def highest_first(hashes: list[str], score: np.ndarray) -> np.ndarray:
    """Positions with a finite score, by descending score, ties by ascending hash."""
    ok = np.flatnonzero(np.isfinite(score))
    low, high = hash_keys(hashes)
    return ok[np.lexsort((low[ok], high[ok], -score[ok]))]


def difference_order(hashes: list[str], gap: np.ndarray, seed: int) -> np.ndarray:
    """Positions with a finite gap in a seeded order drawn without replacement, weights ``exp(gap)``.

    Args:
        hashes: (N,) window hashes (the tie-break between equal keys).
        gap: (N,) teacher-minus-reference log-likelihood per token (reference loss minus teacher loss).
        seed: seeds the exponential draws (one per window of the pool, so a window's key does not depend
            on which others are candidates).
    """
    draws = np.random.default_rng(seed).exponential(size=len(gap))
    keys = np.log(draws) - gap  # log(E / w); ascending = the Efraimidis-Spirakis order
    ok = np.flatnonzero(np.isfinite(keys))
    low, high = hash_keys(hashes)
    return ok[np.lexsort((low[ok], high[ok], keys[ok]))]
