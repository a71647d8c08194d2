"""The selection methods and diversity rules the service offers, named once for the service and the CLI."""

from __future__ import annotations

from typing import Literal, get_args

SelectionMethod = Literal["salt_ds", "loss_band", "random", "reducible_loss", "difference", "conditional"]
"""How a selection orders a scored pool's windows. By the served model's scores: highest SALT_DS score, a
band of mean-loss quantiles (in a seeded random order), or a seeded random order. By two models' mean
losses (``METHOD_ROLES``): highest reducible loss (RHO-LOSS), MiniPLM's difference sampling (seeded), or
highest conditional loss reduction (CoLoR-Filter)."""
SELECTION_METHODS: tuple[str, ...] = get_args(SelectionMethod)

METHOD_ROLES: dict[str, tuple[str, str]] = {
    "reducible_loss": ("learner", "reference"),
    "difference": ("teacher", "reference"),
    "conditional": ("prior", "conditional"),
}
"""The two models each two-model method compares, by role: a selection names a model fingerprint for each
(the first role's loss minus the second's is the score, except ``difference``: reference minus teacher)."""

Diversity = Literal["none", "kmeans", "dedup"]
"""How a selection takes its budget from the method's order: the first windows, spread over k-means
clusters of the embeddings, or skipping near-duplicates."""
DIVERSITIES: tuple[str, ...] = get_args(Diversity)
