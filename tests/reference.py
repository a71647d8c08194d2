"""Plain reference implementations of the label and score math, for checking the fast paths in tests."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from shared.labels import SALT_DS_TOPK, TAIL_FLOOR


def topk_soft_labels(
    logits: torch.Tensor, k: int, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-k soft labels of a batch of logits.

    Args:
        logits: (B, L, V) next-token logits, any float dtype.
        k: ids to keep per position, 1 <= k <= V.
        temperature: softmax temperature, > 0.

    Returns:
        ids (B, L, k) int64, logprobs (B, L, k) float32, tail (B, L) float32 (floored at TAIL_FLOOR).
    """
    V = logits.shape[-1]
    if not 1 <= k <= V:
        raise ValueError(f"k must be in [1, {V}], got {k}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    return topk_from_logprobs(F.log_softmax(logits.float() / temperature, dim=-1), k)


def topk_from_logprobs(logp: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``topk_soft_labels`` from log-probs already computed at the wanted temperature: (B, L, V) float32."""
    top_lp, top_ids = logp.topk(k, dim=-1)  # (B, L, k), sorted descending
    # The tail as a logsumexp over the ids left out: exact even when the top-k holds almost all the mass,
    # where log1p(-sum(p_topk)) would cancel catastrophically.
    rest = logp.scatter(-1, top_ids, float("-inf"))  # (B, L, V)
    tail = torch.logsumexp(rest, dim=-1)  # (B, L); -inf when k == V
    return top_ids, top_lp.clamp_min(TAIL_FLOOR), tail.clamp_min(TAIL_FLOOR)


def window_scores(logits: torch.Tensor, targets: torch.Tensor, hidden: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-window learnability figures (temperature 1), one window at a time with numpy's median.

    Args:
        logits: (B, L, V) next-token logits.
        targets: (B, L) int64 true next tokens.
        hidden: (B, L, C) last hidden states.

    Returns:
        dict of arrays: ``n_tokens`` (B,) int64, ``mean_loss``, ``median_loss``, ``top1_acc``,
        ``mean_entropy``, ``salt_ds`` (B,) float64 (NaN: no position qualifies) and ``embedding`` (B, C) float16.
    """
    logp = F.log_softmax(logits.double(), dim=-1).numpy()  # (B, L, V)
    t = targets.numpy()
    B, L, V = logp.shape
    out: dict[str, list[object]] = {k: [] for k in
                                    ("n_tokens", "mean_loss", "median_loss", "top1_acc", "mean_entropy", "salt_ds")}
    for b in range(B):
        loss = np.array([-logp[b, i, t[b, i]] for i in range(L)])
        order = np.argsort(-logp[b], axis=-1, kind="stable")  # (L, V)
        in_top = np.array([t[b, i] in order[i, : min(SALT_DS_TOPK, V)] for i in range(L)])
        out["n_tokens"].append(L)
        out["mean_loss"].append(loss.mean())
        out["median_loss"].append(np.median(loss))
        out["top1_acc"].append(float(np.mean(order[:, 0] == t[b])))
        out["mean_entropy"].append(float(-(np.exp(logp[b]) * logp[b]).sum(-1).mean()))
        out["salt_ds"].append(np.median(loss[in_top]) if in_top.any() else np.nan)
    scores = {k: np.asarray(v, dtype=np.int64 if k == "n_tokens" else np.float64) for k, v in out.items()}
    scores["embedding"] = hidden.float().mean(1).to(torch.float16).numpy()
    return scores


def sampled_labels_ref(logits: torch.Tensor, draws: int, temperature: float, seeds: list[int]
                       ) -> list[list[list[tuple[int, int]]]]:
    """Sampled labels one draw at a time: per window and position, (id, count) pairs, most drawn first.

    The uniforms are splitmix64 in Python integers (the same counter-based stream as
    ``shared.sampling.draw_uniforms``), each turned into an id by a linear scan of the CDF.
    """
    mask = (1 << 64) - 1
    p = F.softmax(logits.float() / temperature, dim=-1).double().numpy()  # (B, L, V)
    B, L, V = p.shape
    out = []
    for b in range(B):
        rows = []
        for pos in range(L):
            cdf = np.cumsum(p[b, pos])
            counts: dict[int, int] = {}
            for j in range(draws):
                x = (seeds[b] + (pos * draws + j + 1) * 0x9E3779B97F4A7C15) & mask
                x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & mask
                x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & mask
                x ^= x >> 31
                u = (x >> 11) / float(1 << 53) * cdf[-1]
                i = min(int(np.searchsorted(cdf, u, side="right")), V - 1)
                counts[i] = counts.get(i, 0) + 1
            rows.append(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
        out.append(rows)
    return out


def sampled_kd_ref(student_logits: torch.Tensor, ids: torch.Tensor, counts: torch.Tensor, draws: int,
                   temperature: float = 1.0) -> torch.Tensor:
    """Mean over positions of ``-sum_i (c_i / N) log q_T(i)``, position by position."""
    logq = F.log_softmax(student_logits.double() / temperature, dim=-1)
    B, L, W = ids.shape
    total = torch.zeros((), dtype=torch.float64)
    for b in range(B):
        for pos in range(L):
            for w in range(W):
                total = total - counts[b, pos, w] / draws * logq[b, pos, ids[b, pos, w]]
    return total / (B * L)
