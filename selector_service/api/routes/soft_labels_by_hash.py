"""POST /v1/soft-labels/by-hash: the cached soft labels of windows named by hash; the others named as missing.

The body is the windows' raw 16-byte hashes back to back (``application/octet-stream``), the cheapest
thing to send, check and parse: no token ids travel, none are validated or hashed again. The answer is
the binary wire format (``shared.wire``) holding the cached windows only, in request order; its
metadata names the positions not cached (``missing``), which the client then sends as windows to
``POST /v1/soft-labels``.
"""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from selector_service.api.deps import LabelCacheDep, SettingsDep
from selector_service.cache.label_cache import LabelCache
from selector_service.domain.errors import DomainError
from selector_service.domain.windows import check_batch_size, label_k
from shared.data import HASH_BYTES
from shared.labels import MAX_K
from shared.wire import WIRE_MEDIA_TYPE, encode_wire

router = APIRouter(prefix="/v1", tags=["soft-labels"])

HASHES_MEDIA_TYPE = "application/octet-stream"

_BODY_DOC = {"requestBody": {"required": True, "description": "N window hashes, 16 raw bytes each (blake2b-128 "
                             "of the ids as little-endian uint32), back to back; N <= SALT_MAX_BATCH_WINDOWS.",
                             "content": {HASHES_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}}}}


@router.post(
    "/soft-labels/by-hash",
    response_class=Response,
    openapi_extra=_BODY_DOC,
    responses={200: {"content": {WIRE_MEDIA_TYPE: {}}, "description": "Safetensors bytes (shared/wire.py) of the "
                     "cached windows, in request order; metadata `hashes` (theirs), `missing` (JSON list of the "
                     "request positions not cached), `count`, `kind`, `model`, `precision`, `k`, `temperature`"},
               415: {"description": "the body is not application/octet-stream"}},
)
async def soft_labels_by_hash(
    request: Request, cache: LabelCacheDep, settings: SettingsDep,
    k: Annotated[int | None, Query(ge=1, le=MAX_K, description="Ids kept per position (default: SALT_DEFAULT_K).")]
    = None,
    temperature: Annotated[float, Query(gt=0.0, le=100.0, description="Softmax temperature of the labels.")] = 1.0,
) -> Response:
    """Cached top-k labels of the windows whose hashes the body holds; the positions not cached as ``missing``."""
    slm = cache.slm
    kk = label_k(slm, settings, k)
    hashes = request_hashes(request.headers.get("content-type", ""), await request.body(),
                            settings.max_batch_windows)
    meta = {"model": slm.fingerprint, "precision": slm.precision, "k": str(kk), "temperature": str(temperature),
            "kind": "topk", "count": str(len(hashes))}
    return Response(await run_in_threadpool(_answer, cache, hashes, kk, temperature, meta),
                    media_type=WIRE_MEDIA_TYPE)


def request_hashes(content_type: str, body: bytes, limit: int) -> list[str]:
    """The hex hashes of a by-hash body, refused when it is not raw 16-byte digests or holds too many."""
    if content_type.split(";")[0].strip().lower() != HASHES_MEDIA_TYPE:
        raise HTTPException(415, f"send the hashes as {HASHES_MEDIA_TYPE} (16 raw bytes per window)")
    if len(body) % HASH_BYTES:
        raise DomainError("invalid", "bad_hashes", f"the body is {len(body)} bytes, not a multiple of {HASH_BYTES} "
                                                   f"(one raw {HASH_BYTES}-byte hash per window)")
    check_batch_size(len(body) // HASH_BYTES, limit)
    hexed = body.hex()
    step = 2 * HASH_BYTES
    return [hexed[i : i + step] for i in range(0, len(hexed), step)]


def _answer(cache: LabelCache, hashes: list[str], k: int, temperature: float, meta: dict[str, str]) -> bytes:
    """The wire bytes of the cached windows (one worker thread: lookup, decode and encode)."""
    positions, batch = cache.cached_labels(hashes, k, temperature)
    found = set(positions)
    meta = meta | {"hashes": json.dumps([hashes[i] for i in positions]),
                   "missing": json.dumps([i for i in range(len(hashes)) if i not in found])}
    return encode_wire(batch.ids, batch.logprobs, batch.tail, batch.lengths, vocab_size=cache.slm.vocab_size,
                       metadata=meta)
