"""POST /v1/soft-labels: top-k or sampled soft labels per predicted position, JSON or safetensors bytes."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from selector_service.api.deps import LabelCacheDep, SettingsDep
from selector_service.api.sampled import sampled_answer
from selector_service.api.schemas import SampledLabelsResponse, SoftLabelsRequest, SoftLabelsResponse
from selector_service.cache.label_cache import LabelArrays
from selector_service.domain.windows import label_k, request_windows
from shared.wire import WIRE_MEDIA_TYPE, encode_wire

router = APIRouter(prefix="/v1", tags=["soft-labels"])

_BINARY_TYPES = (WIRE_MEDIA_TYPE, "application/octet-stream")


def wants_binary(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return any(t in accept for t in _BINARY_TYPES)


@router.post(
    "/soft-labels",
    response_model=SoftLabelsResponse | SampledLabelsResponse,
    responses={200: {"content": {WIRE_MEDIA_TYPE: {}}, "description": "JSON, or safetensors bytes when "
                     f"`Accept: {WIRE_MEDIA_TYPE}` (layout in shared/wire.py)"}},
)
async def soft_labels(body: SoftLabelsRequest, request: Request, cache: LabelCacheDep,
                      settings: SettingsDep) -> Response:
    """Top-k ids, log-probs and tail log-mass (kind topk), or unique drawn ids and counts (kind sample),
    for every predicted position of every window."""
    if body.kind == "sample":
        return await sampled_answer(body, wants_binary(request), cache)
    slm = cache.slm
    k = label_k(slm, settings, body.k, body.draws)
    windows = request_windows(slm, settings, windows=body.windows, texts=body.texts)
    hashes, labels = await cache.soft_labels(windows, k, body.temperature)
    meta = {"model": slm.fingerprint, "precision": slm.precision, "k": k, "temperature": body.temperature}
    if wants_binary(request):
        return Response(wire_bytes(hashes, labels, k, meta, slm.vocab_size), media_type=WIRE_MEDIA_TYPE)
    windows_out = [
        {"hash": h, "ids": a.tolist(), "logprobs": b.astype(np.float32).tolist(), "tail": c.astype(np.float32).tolist()}
        for h, (a, b, c) in zip(hashes, labels, strict=True)
    ]
    return JSONResponse({**meta, "kind": "topk", "windows": windows_out})


def wire_bytes(hashes: list[str], labels: list[LabelArrays], k: int, meta: dict[str, Any], vocab_size: int) -> bytes:
    """The safetensors answer: windows padded to the longest, zero past each one's length."""
    lengths = np.array([lab[0].shape[0] for lab in labels], dtype=np.int32)
    L = int(lengths.max())
    ids = np.zeros((len(labels), L, k), dtype=np.int64)  # (N, L, k)
    lp = np.zeros((len(labels), L, k), dtype=np.float16)  # (N, L, k)
    tail = np.zeros((len(labels), L), dtype=np.float16)  # (N, L)
    for i, (a, b, c) in enumerate(labels):
        n = a.shape[0]
        ids[i, :n], lp[i, :n], tail[i, :n] = a, b, c
    return encode_wire(ids, lp, tail, lengths, vocab_size=vocab_size,
                       metadata={key: str(v) for key, v in meta.items()} | {"hashes": json.dumps(hashes)})
