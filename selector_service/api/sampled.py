"""The sampled-label answer of POST /v1/soft-labels (``kind: sample``): JSON or safetensors bytes."""

from __future__ import annotations

import json

from fastapi.responses import JSONResponse, Response

from selector_service.api.schemas import SoftLabelsRequest
from selector_service.cache.label_cache import LabelCache, SampledArrays
from selector_service.domain.windows import label_draws, request_windows
from shared.blobs.label_batch import pad_sampled
from shared.wire import WIRE_MEDIA_TYPE, encode_sampled_wire


async def sampled_answer(body: SoftLabelsRequest, binary: bool, cache: LabelCache) -> Response:
    """Unique drawn ids and their counts for every predicted position of every window."""
    slm, settings = cache.slm, cache.settings
    draws = label_draws(body.k, body.draws)
    windows = request_windows(slm, settings, windows=body.windows, texts=body.texts)
    hashes, labels = await cache.sampled_labels(windows, draws, body.temperature)
    meta = {"model": slm.fingerprint, "precision": slm.precision, "draws": draws, "temperature": body.temperature}
    if binary:
        return Response(sampled_wire_bytes(hashes, labels, meta, slm.vocab_size), media_type=WIRE_MEDIA_TYPE)
    windows_out = [{"hash": h, "ids": a.tolist(), "counts": c.tolist()}
                   for h, (a, c) in zip(hashes, labels, strict=True)]
    return JSONResponse({**meta, "kind": "sample", "windows": windows_out})


def sampled_wire_bytes(hashes: list[str], labels: list[SampledArrays], meta: dict[str, object], vocab_size: int
                       ) -> bytes:
    """The safetensors answer: windows padded to the longest and the widest, zero past each one's own (no
    window: an empty batch)."""
    ids_out, counts_out, lengths = pad_sampled(labels)
    return encode_sampled_wire(ids_out, counts_out, lengths, vocab_size=vocab_size,
                               metadata={key: str(v) for key, v in meta.items()} | {"hashes": json.dumps(hashes)})
