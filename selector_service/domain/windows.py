"""A request's windows or texts turned into checked int64 arrays: every bound of the batch, the text
length, the window length and the vocabulary, checked before anything is computed."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from selector_service.cache.slm import SLMRunner
from selector_service.config import Settings
from selector_service.domain.errors import DomainError
from shared.sampling import DEFAULT_DRAWS


def request_windows(slm: SLMRunner, settings: Settings, *, windows: Sequence[Sequence[int]] | None,
                    texts: Sequence[str] | None) -> list[np.ndarray]:
    """The windows of a request, given as token ids or as texts (exactly one of the two).

    Args:
        slm: the served model (tokenizer, context and vocabulary).
        settings: the configured limits (windows per request, characters per text).
        windows: windows of ``L + 1`` ids each (inputs ``w[:-1]``, targets ``w[1:]``).
        texts: texts, tokenized without special tokens and then checked like windows.

    Returns:
        One (L + 1,) int64 array per window, in order.

    Raises:
        DomainError: invalid (neither or both given, a window too short or too long, an id outside the
            vocabulary, an empty batch) or too_large (too many windows, a text too long).
    """
    if (windows is None) == (texts is None):
        raise DomainError("invalid", "invalid_request", "give exactly one of 'windows' or 'texts'")
    if texts is not None:
        check_batch_size(len(texts), settings.max_batch_windows)
        for i, t in enumerate(texts):
            if len(t) > settings.max_text_chars:
                raise DomainError("too_large", "payload_too_large",
                                  f"texts[{i}] is over {settings.max_text_chars} characters")
        encoded = slm.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        raw: Sequence[Sequence[int]] = [e.ids for e in encoded]
        name = "texts"
    else:
        raw = windows or []
        check_batch_size(len(raw), settings.max_batch_windows)
        name = "windows"
    return [_checked_window(ids, f"{name}[{i}]", slm) for i, ids in enumerate(raw)]


def _checked_window(ids: Sequence[int], where: str, slm: SLMRunner) -> np.ndarray:
    if len(ids) < 2:
        raise DomainError("invalid", "window_too_short", f"{where} has {len(ids)} tokens; a window needs at least 2")
    if len(ids) - 1 > slm.block_size:
        raise DomainError("invalid", "window_too_long",
                          f"{where} predicts {len(ids) - 1} positions; the model's context is {slm.block_size}")
    return token_ids(ids, where, slm.vocab_size)


def token_ids(ids: Sequence[int], where: str, vocab_size: int) -> np.ndarray:
    """(len(ids),) int64 ids, refused (invalid, ``token_out_of_vocab``) outside [0, vocab_size)."""
    arr = np.asarray(ids, dtype=np.int64)
    if arr.min() < 0 or arr.max() >= vocab_size:
        raise DomainError("invalid", "token_out_of_vocab", f"{where} holds a token id outside [0, {vocab_size})")
    return arr


def check_batch_size(n: int, limit: int) -> None:
    """Refuse an empty batch (invalid) or one of more than ``limit`` windows (too_large)."""
    if n == 0:
        raise DomainError("invalid", "empty_batch", "the batch holds no windows")
    if n > limit:
        raise DomainError("too_large", "batch_too_large", f"{n} windows is over the limit of {limit}")


def label_k(slm: SLMRunner, settings: Settings, k: int | None, draws: int | None = None) -> int:
    """The k of a top-k soft-label request: the default when not given; refused above min(max_k,
    vocabulary), and refused with draws (sample labels only)."""
    if draws is not None:
        raise DomainError("invalid", "draws_with_topk", "draws is for sample labels; pass kind=sample or drop draws")
    k = k if k is not None else settings.default_k
    bound = min(settings.max_k, slm.vocab_size)
    if k > bound:
        raise DomainError("invalid", "k_out_of_range", f"k must be in [1, {bound}]")
    return k


def label_draws(k: int | None, draws: int | None) -> int:
    """The draws of a sampled-label request (the default when not given); a k is refused (top-k only)."""
    if k is not None:
        raise DomainError("invalid", "k_with_sample", "k is for top-k labels; a sample request takes draws")
    return draws if draws is not None else DEFAULT_DRAWS
