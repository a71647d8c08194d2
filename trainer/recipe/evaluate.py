"""Held-out evaluation: log-perplexity (nats per token) and next-token accuracy."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from shared.data import WindowSplit
from shared.model import GPT
from trainer.distributed import World, all_sum


@torch.no_grad()
def evaluate_batch(model: GPT, windows: torch.Tensor) -> tuple[float, int, int]:
    """Sum of next-token losses, correct top-1 predictions and token count over a batch.

    Args:
        model: the model (its mode is left unchanged by the caller's context).
        windows: (B, T + 1) int64 windows; inputs ``[:, :-1]``, targets ``[:, 1:]``.

    Returns:
        (sum of cross-entropy in nats, number of correct argmax predictions, number of tokens)
    """
    x, y = windows[:, :-1], windows[:, 1:]  # (B, T), (B, T)
    logits = model(x).float()  # (B, T, V)
    loss_sum = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").item()
    correct = int((logits.argmax(-1) == y).sum().item())
    return loss_sum, correct, y.numel()


def evaluate(
    model: GPT,
    split: WindowSplit,
    *,
    max_windows: int,
    batch_size: int,
    device: torch.device,
    autocast: contextlib.AbstractContextManager[object] | None = None,
    world: World | None = None,
) -> dict[str, float]:
    """Evaluate on the first ``max_windows`` windows of ``split`` (a fixed set, so runs compare).

    Under ``torchrun`` each rank evaluates every ``world.size``-th of those windows and the sums are
    added over the ranks, so every rank gets the same figures.

    Returns:
        ``{"val_loss": mean nats/token, "val_acc": next-token accuracy, "val_tokens": count}``
    """
    was_training = model.training
    model.eval()
    world = world or World()
    n = min(max_windows, len(split))
    rows = range(world.rank, n, world.size)
    # Every rank runs as many forward passes as the rank with the most rows: a sharded model's forward is
    # a collective, so a rank with nothing left runs a pass on row 0 and keeps none of it.
    passes = -(-len(range(0, n, world.size)) // batch_size)
    total_loss, total_correct, total_tokens = 0.0, 0, 0
    try:
        for start in range(0, passes * batch_size, batch_size):
            mine = rows[start : start + batch_size]
            batch = split.batch(mine if len(mine) else [0]).to(device)
            with autocast or contextlib.nullcontext():
                loss_sum, correct, tokens = evaluate_batch(model, batch)
            if len(mine):
                total_loss += loss_sum
                total_correct += correct
                total_tokens += tokens
    finally:
        model.train(was_training)
    total_loss, total_correct, total_tokens = all_sum(world, [total_loss, total_correct, total_tokens], device)
    return {
        "val_loss": total_loss / total_tokens,
        "val_acc": total_correct / total_tokens,
        "val_tokens": float(total_tokens),
    }
