"""POST /v1/soft-labels: top-k soft labels per predicted position, JSON or safetensors bytes."""

from __future__ import annotations

import json

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from selector_service.deps import SelectorDep, SettingsDep, windows_of
from selector_service.errors import ApiError
from selector_service.schemas import SoftLabelsRequest, SoftLabelsResponse
from shared.softlabels import WIRE_MEDIA_TYPE, encode_wire

router = APIRouter(prefix="/v1", tags=["soft-labels"])

_BINARY_TYPES = (WIRE_MEDIA_TYPE, "application/octet-stream")


def wants_binary(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return any(t in accept for t in _BINARY_TYPES)


@router.post(
    "/soft-labels",
    response_model=SoftLabelsResponse,
    responses={200: {"content": {WIRE_MEDIA_TYPE: {}}, "description": "JSON, or safetensors bytes when "
                     f"`Accept: {WIRE_MEDIA_TYPE}` (layout in shared/softlabels.py)"}},
)
async def soft_labels(body: SoftLabelsRequest, request: Request, selector: SelectorDep,
                      settings: SettingsDep) -> Response:
    """Top-k ids, log-probs and tail log-mass for every predicted position of every window."""
    engine = selector.engine
    k = body.k if body.k is not None else settings.default_k
    if k > min(settings.max_k, engine.vocab_size):
        raise ApiError(422, "k_out_of_range", f"k must be in [1, {min(settings.max_k, engine.vocab_size)}]")
    windows = windows_of(body, selector, settings)
    hashes, labels = await selector.soft_labels(windows, k, body.temperature)
    meta = {"model": engine.fingerprint, "precision": engine.precision, "k": k, "temperature": body.temperature}
    if wants_binary(request):
        lengths = np.array([lab[0].shape[0] for lab in labels], dtype=np.int32)
        L = int(lengths.max())
        ids = np.zeros((len(labels), L, k), dtype=np.int64)
        lp = np.zeros((len(labels), L, k), dtype=np.float16)
        tail = np.zeros((len(labels), L), dtype=np.float16)
        for i, (a, b, c) in enumerate(labels):
            n = a.shape[0]
            ids[i, :n], lp[i, :n], tail[i, :n] = a, b, c
        data = encode_wire(ids, lp, tail, lengths, vocab_size=engine.vocab_size,
                           metadata={key: str(v) for key, v in meta.items()} | {"hashes": json.dumps(hashes)})
        return Response(data, media_type=WIRE_MEDIA_TYPE)
    windows_out = [
        {"hash": h, "ids": a.tolist(), "logprobs": b.astype(np.float32).tolist(), "tail": c.astype(np.float32).tolist()}
        for h, (a, b, c) in zip(hashes, labels, strict=True)
    ]
    return JSONResponse({**meta, "windows": windows_out})
