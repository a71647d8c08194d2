"""POST /v1/soft-labels/by-hash: the cached soft labels of windows named by hash; the others named as missing.

The body is the windows' raw 16-byte hashes back to back (``application/octet-stream``), the cheapest
thing to send, check and parse: no token ids travel, none are validated or hashed again. The answer is
the binary wire format (``shared.wire``) holding the cached windows only, in request order: top-k labels,
or with ``kind=sample`` sampled ones; its metadata names the positions not cached (``missing``), which the
client then sends as windows to ``POST /v1/soft-labels``. With ``encoding=blobs`` the labels go as the cache
stores them, neither checked nor decoded here: the client checks and decodes them, and sends the windows
of any blob that fails, which the service then finds damaged and recomputes.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from selector_service.api.deps import LabelCacheDep, SettingsDep
from selector_service.api.sampled import sampled_wire_bytes
from selector_service.cache.label_cache import LabelCache
from selector_service.domain.errors import DomainError
from selector_service.domain.windows import check_batch_size, label_draws, label_k
from shared.data import HASH_BYTES
from shared.labels import MAX_K
from shared.sampling import MAX_DRAWS, LabelKind
from shared.wire import BLOBS, WIRE_MEDIA_TYPE, encode_blobs_wire, encode_wire

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
                     "request positions not cached), `count`, `kind`, `model`, `precision`, `temperature`, and "
                     "`k` (top-k) or `draws` (sample)"},
               415: {"description": "the body is not application/octet-stream"}},
)
async def soft_labels_by_hash(
    request: Request, cache: LabelCacheDep, settings: SettingsDep,
    k: Annotated[int | None, Query(ge=1, le=MAX_K, description="Ids kept per position (default: SALT_DEFAULT_K); "
                                   "top-k only.")] = None,
    temperature: Annotated[float, Query(gt=0.0, le=100.0, description="Softmax temperature of the labels.")] = 1.0,
    kind: Annotated[LabelKind, Query(description="topk: top-k labels; sample: sampled labels (ids and counts).")]
    = "topk",
    draws: Annotated[int | None, Query(ge=1, le=MAX_DRAWS, description="Draws per position; sample only.")] = None,
    encoding: Annotated[Literal["arrays", "blobs"], Query(description="arrays: decoded labels; blobs: the stored "
                        "blobs as they are, for the client to check and decode (shared.wire).")] = "arrays",
) -> Response:
    """Cached labels of the windows whose hashes the body holds; the positions not cached as ``missing``."""
    slm = cache.slm
    sample = kind == "sample"
    width = {"draws": str(label_draws(k, draws))} if sample else {"k": str(label_k(slm, settings, k, draws))}
    hashes = request_hashes(request.headers.get("content-type", ""), await request.body(),
                            settings.max_batch_windows)
    meta = {"model": slm.fingerprint, "precision": slm.precision, "temperature": str(temperature), "kind": kind,
            "count": str(len(hashes)), **width}
    if encoding == BLOBS:
        body = await run_in_threadpool(_answer_blobs, cache, hashes, temperature, meta)
    else:
        body = await run_in_threadpool(_answer_sampled if sample else _answer, cache, hashes, temperature, meta)
    return Response(body, media_type=WIRE_MEDIA_TYPE)


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


def _answer(cache: LabelCache, hashes: list[str], temperature: float, meta: dict[str, str]) -> bytes:
    """The wire bytes of the cached windows' top-k labels (one worker thread: lookup, decode and encode)."""
    positions, batch = cache.cached_labels(hashes, int(meta["k"]), temperature)
    found = _found(hashes, positions)
    return encode_wire(batch.ids, batch.logprobs, batch.tail, batch.lengths, vocab_size=cache.slm.vocab_size,
                       metadata=meta | found)


def _answer_blobs(cache: LabelCache, hashes: list[str], temperature: float, meta: dict[str, str]) -> bytes:
    """The wire bytes of the cached windows' stored blobs (one worker thread: lookup and framing only)."""
    width = {"draws": int(meta["draws"])} if "draws" in meta else {"k": int(meta["k"])}
    positions, rows = cache.cached_blobs(hashes, temperature, **width)
    found = _found(hashes, positions)
    return encode_blobs_wire([r.blob for r in rows], [r.checksum for r in rows], metadata=meta | found)


def _answer_sampled(cache: LabelCache, hashes: list[str], temperature: float, meta: dict[str, str]) -> bytes:
    """The wire bytes of the cached windows' sampled labels."""
    positions, labels = cache.cached_sampled(hashes, int(meta["draws"]), temperature)
    return sampled_wire_bytes([hashes[i] for i in positions], labels,
                              meta | {"missing": _found(hashes, positions)["missing"]}, cache.slm.vocab_size)


def _found(hashes: list[str], positions: list[int]) -> dict[str, str]:
    """The metadata naming the windows answered (``hashes``) and the request positions not cached."""
    found = set(positions)
    return {"hashes": json.dumps([hashes[i] for i in positions]),
            "missing": json.dumps([i for i in range(len(hashes)) if i not in found])}
