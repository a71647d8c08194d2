"""Dependencies shared by the routers, and the checks that turn a request into windows."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import Depends, Request

from selector_service.config import Settings
from selector_service.errors import ApiError
from selector_service.schemas import WindowsRequest
from selector_service.selector import Selector


def get_selector(request: Request) -> Selector:
    return request.app.state.selector


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


SelectorDep = Annotated[Selector, Depends(get_selector)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def windows_of(body: WindowsRequest, selector: Selector, settings: Settings) -> list[np.ndarray]:
    """The request's windows as int64 arrays, after every bound is checked (422/413 otherwise)."""
    if (body.windows is None) == (body.texts is None):
        raise ApiError(422, "invalid_request", "give exactly one of 'windows' or 'texts'")
    engine = selector.engine
    if body.texts is not None:
        n = len(body.texts)
        _check_count(n, settings)
        for i, t in enumerate(body.texts):
            if len(t) > settings.max_text_chars:
                raise ApiError(413, "payload_too_large", f"texts[{i}] is over {settings.max_text_chars} characters")
        raw = [e.ids for e in engine.tokenizer.encode_batch(body.texts, add_special_tokens=False)]
        name = "texts"
    else:
        raw = body.windows or []
        _check_count(len(raw), settings)
        name = "windows"
    out = []
    for i, ids in enumerate(raw):
        if len(ids) < 2:
            raise ApiError(422, "window_too_short", f"{name}[{i}] has {len(ids)} tokens; a window needs at least 2")
        if len(ids) - 1 > engine.block_size:
            raise ApiError(422, "window_too_long",
                           f"{name}[{i}] predicts {len(ids) - 1} positions; the model's context is {engine.block_size}")
        arr = np.asarray(ids, dtype=np.int64)
        if arr.min() < 0 or arr.max() >= engine.vocab_size:
            raise ApiError(422, "token_out_of_vocab",
                           f"{name}[{i}] holds a token id outside [0, {engine.vocab_size})")
        out.append(arr)
    return out


def _check_count(n: int, settings: Settings) -> None:
    if n == 0:
        raise ApiError(422, "empty_batch", "the batch holds no windows")
    if n > settings.max_batch_windows:
        raise ApiError(413, "batch_too_large", f"{n} windows is over the limit of {settings.max_batch_windows}")
