"""The wire format of soft labels: what the service answers to programs and the client decodes.

Safetensors bytes (``WIRE_MEDIA_TYPE``). Metadata (all strings): ``format`` = ``WIRE_FORMAT``, ``kind``
(``topk`` or ``sample``), ``temperature``, ``model`` (fingerprint), ``precision``, ``hashes`` (JSON list
of window hashes, in request order), and ``k`` (top-k) or ``draws`` (sample).

- top-k: ``ids`` (N, L, k) uint8/uint16/uint32 (narrowest that holds the vocabulary), ``logprobs``
  (N, L, k) float16, ``tail`` (N, L) float16.
- sample: ``ids`` (N, L, W) as above and ``counts`` (N, L, W) uint8 (0: padding), W the widest
  position's unique ids.

Both carry ``lengths`` (N,) int32; windows shorter than L are zero-padded past their length. Version 2
added the kind; version-1 payloads (top-k only) are still read, and a version-1 decoder refuses
version 2 by its format string.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch
from safetensors.numpy import load as st_load

from shared.labels import SoftLabels, id_dtype
from shared.sampling import SampledLabels

WIRE_FORMAT = "salt-softlabels-v2"
WIRE_FORMATS_READ = ("salt-softlabels-v1", WIRE_FORMAT)
WIRE_MEDIA_TYPE = "application/x-safetensors"


def encode_wire(
    ids: np.ndarray, logprobs: np.ndarray, tail: np.ndarray, lengths: np.ndarray, *, vocab_size: int,
    metadata: dict[str, str],
) -> bytes:
    """Safetensors bytes of top-k labels: ids (N, L, k), logprobs (N, L, k), tail (N, L), lengths (N,).

    Written here rather than by ``safetensors.numpy.save`` so the bytes are deterministic (sorted header
    keys): the same labels always give the same answer, byte for byte.
    """
    return _safetensors({
        "ids": np.ascontiguousarray(ids, dtype=id_dtype(vocab_size)),
        "logprobs": np.ascontiguousarray(logprobs, dtype="<f2"),
        "tail": np.ascontiguousarray(tail, dtype="<f2"),
        "lengths": np.ascontiguousarray(lengths, dtype="<i4"),
    }, {**metadata, "kind": "topk"})


def encode_sampled_wire(
    ids: np.ndarray, counts: np.ndarray, lengths: np.ndarray, *, vocab_size: int, metadata: dict[str, str],
) -> bytes:
    """Safetensors bytes of sampled labels: ids (N, L, W), counts (N, L, W), lengths (N,)."""
    return _safetensors({
        "ids": np.ascontiguousarray(ids, dtype=id_dtype(vocab_size)),
        "counts": np.ascontiguousarray(counts, dtype="u1"),
        "lengths": np.ascontiguousarray(lengths, dtype="<i4"),
    }, {**metadata, "kind": "sample"})


def _safetensors(tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> bytes:
    header: dict[str, object] = {"__metadata__": dict(sorted({"format": WIRE_FORMAT, **metadata}.items()))}
    offset = 0
    for name in sorted(tensors):
        t = tensors[name]
        header[name] = {"dtype": _ST_DTYPES[t.dtype.str[1:]], "shape": list(t.shape),
                        "data_offsets": [offset, offset + t.nbytes]}
        offset += t.nbytes
    head = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)  # data starts 8-byte aligned
    return b"".join([len(head).to_bytes(8, "little"), head, *(tensors[n].tobytes() for n in sorted(tensors))])


_ST_DTYPES = {"u1": "U8", "u2": "U16", "u4": "U32", "f2": "F16", "i4": "I32"}


def _read(data: bytes, kind: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    header_len = int.from_bytes(data[:8], "little")
    meta = json.loads(data[8 : 8 + header_len]).get("__metadata__", {})
    if meta.get("format") not in WIRE_FORMATS_READ:
        raise ValueError(f"not a {WIRE_FORMAT} payload (format {meta.get('format')!r})")
    got = meta.get("kind", "topk")
    if got != kind:
        raise ValueError(f"a {got!r} labels payload where {kind!r} labels were expected")
    return meta, st_load(data)


def decode_wire(data: bytes) -> SoftLabels:
    """Parse top-k ``encode_wire`` bytes into torch tensors (ids int64, log-probs and tail float32)."""
    meta, t = _read(data, "topk")
    return SoftLabels(
        ids=torch.from_numpy(t["ids"].astype(np.int64)),
        logprobs=_float32(t["logprobs"]),
        tail=_float32(t["tail"]),
        lengths=torch.from_numpy(t["lengths"].astype(np.int64)),
        hashes=json.loads(meta.get("hashes", "[]")),
        k=int(meta["k"]),
        temperature=float(meta["temperature"]),
    )


_CONVERT_CHUNK = 1 << 14
"""Elements per float16 -> float32 copy: under torch's parallel grain, so the copy stays on this thread."""


def _float32(a: np.ndarray) -> torch.Tensor:
    """float16 values as a float32 tensor. torch converts several times faster than numpy's ``astype``;
    chunks keep it from handing arrays this small to its thread pool, whose hand-off costs more than the work."""
    src = torch.from_numpy(np.ascontiguousarray(a)).reshape(-1)
    out = torch.empty(src.shape, dtype=torch.float32)
    for i in range(0, src.numel(), _CONVERT_CHUNK):
        out[i : i + _CONVERT_CHUNK].copy_(src[i : i + _CONVERT_CHUNK])
    return out.reshape(a.shape)


def wire_metadata(data: bytes) -> dict[str, str]:
    """The metadata of ``encode_wire`` bytes (all strings), read from the header alone; {} when it has none."""
    header_len = int.from_bytes(data[:8], "little")
    meta = json.loads(data[8 : 8 + header_len]).get("__metadata__", {})
    return dict(meta) if isinstance(meta, dict) else {}
def decode_sampled_wire(data: bytes) -> SampledLabels:
    """Parse ``encode_sampled_wire`` bytes into torch tensors (ids and counts int64)."""
    meta, t = _read(data, "sample")
    return SampledLabels(
        ids=torch.from_numpy(t["ids"].astype(np.int64)),
        counts=torch.from_numpy(t["counts"].astype(np.int64)),
        lengths=torch.from_numpy(t["lengths"].astype(np.int64)),
        hashes=json.loads(meta.get("hashes", "[]")),
        draws=int(meta["draws"]),
        temperature=float(meta["temperature"]),
    )
