"""Request windows checked without HTTP: every bound, with the kind, code and message the API answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from selector_service.cache.slm import SLMRunner
from selector_service.config import Settings
from selector_service.domain.windows import check_batch_size, label_k, request_windows
from tests.selector_service.conftest import assert_refused as refused


@pytest.fixture
def settings(tiny_checkpoint: Path) -> Settings:
    return Settings(model_path=str(tiny_checkpoint), database_url="sqlite://", max_batch_windows=3,
                    max_text_chars=40, max_k=8, default_k=4)


def test_windows_become_int64_arrays_and_texts_are_tokenized(slm: SLMRunner, settings: Settings) -> None:
    got = request_windows(slm, settings, windows=[[1, 2, 3], [4, 5]], texts=None)
    assert [w.dtype for w in got] == [np.int64, np.int64] and [w.tolist() for w in got] == [[1, 2, 3], [4, 5]]
    text = "the quick brown fox"
    (by_text,) = request_windows(slm, settings, windows=None, texts=[text])
    assert by_text.tolist() == slm.tokenizer.encode(text, add_special_tokens=False).ids


def test_every_bound_is_refused_with_its_code(slm: SLMRunner, settings: Settings) -> None:
    check = request_windows
    assert "exactly one" in refused("invalid", "invalid_request", check, slm, settings, windows=None, texts=None)
    refused("invalid", "invalid_request", check, slm, settings, windows=[[1, 2]], texts=["a b"])
    refused("invalid", "empty_batch", check, slm, settings, windows=[], texts=None)
    refused("invalid", "empty_batch", check, slm, settings, windows=None, texts=[])
    msg = refused("too_large", "batch_too_large", check, slm, settings, windows=[[1, 2]] * 4, texts=None)
    assert msg == "4 windows is over the limit of 3"
    msg = refused("too_large", "payload_too_large", check, slm, settings, windows=None, texts=["ok", "x" * 41])
    assert msg == "texts[1] is over 40 characters"
    msg = refused("invalid", "window_too_short", check, slm, settings, windows=[[1, 2], [7]], texts=None)
    assert msg == "windows[1] has 1 tokens; a window needs at least 2"
    refused("invalid", "window_too_short", check, slm, settings, windows=None, texts=["a"])
    too_long = [1] * (slm.block_size + 2)
    msg = refused("invalid", "window_too_long", check, slm, settings, windows=[too_long], texts=None)
    assert msg == f"windows[0] predicts {slm.block_size + 1} positions; the model's context is {slm.block_size}"
    assert len(check(slm, settings, windows=[too_long[:-1]], texts=None)[0]) == slm.block_size + 1  # the longest
    for bad in (slm.vocab_size, -1):
        msg = refused("invalid", "token_out_of_vocab", check, slm, settings, windows=[[1, bad, 3]], texts=None)
        assert msg == f"windows[0] holds a token id outside [0, {slm.vocab_size})"


def test_the_batch_bound_is_inclusive() -> None:
    check_batch_size(1, 1)
    check_batch_size(3, 3)
    refused("invalid", "empty_batch", check_batch_size, 0, 3)
    refused("too_large", "batch_too_large", check_batch_size, 4, 3)


def test_label_k_defaults_and_bound(slm: SLMRunner, settings: Settings) -> None:
    assert label_k(slm, settings, None) == settings.default_k
    assert label_k(slm, settings, 8) == 8
    assert refused("invalid", "k_out_of_range", label_k, slm, settings, 9) == "k must be in [1, 8]"
    wide = settings.model_copy(update={"max_k": 256, "default_k": 32})
    bound = min(256, slm.vocab_size)
    assert label_k(slm, wide, bound) == bound
    assert refused("invalid", "k_out_of_range", label_k, slm, wide, bound + 1) == f"k must be in [1, {bound}]"
