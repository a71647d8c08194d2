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

With metadata ``encoding`` = ``blobs`` (answers by hash, when asked), the labels travel as the cache
stores them (``shared.blobs.labels``: compressed, about half the bytes of top-32 arrays) for the client to check and
decode: ``blobs`` (B,) uint8, every window's blob back to back, ``offsets`` (N + 1,) int64 (blob i is
``blobs[offsets[i]:offsets[i + 1]]``) and ``checksums`` (N, 16) uint8 (each blob's blake2b-128). An
answer without ``encoding`` holds arrays, as above; each decoder refuses the other encoding.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch
from safetensors.numpy import load as st_load

from shared.blobs.label_batch import pad_sampled, unpack_label_batch, unpack_sampled_batch
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


def encode_blobs_wire(blobs: list[bytes], checksums: list[str], *, metadata: dict[str, str]) -> bytes:
    """Safetensors bytes of stored label blobs as they are (metadata ``kind`` and the label settings
    given; ``encoding`` = ``blobs`` added): blobs (B,), offsets (N + 1,), checksums (N, 16)."""
    offsets = np.zeros(len(blobs) + 1, dtype="<i8")
    np.cumsum([len(b) for b in blobs], out=offsets[1:])
    return _safetensors({
        "blobs": np.frombuffer(b"".join(blobs), dtype=np.uint8),
        "offsets": offsets,
        "checksums": np.frombuffer(bytes.fromhex("".join(checksums)), dtype=np.uint8).reshape(len(blobs), 16),
    }, {**metadata, "encoding": BLOBS})


def decode_blobs_wire(data: bytes, kind: str) -> tuple[dict[str, str], list[bytes], list[str]]:
    """``encode_blobs_wire`` bytes: (metadata, each window's blob, each one's checksum in hex); ValueError
    when the payload is not a blobs answer of ``kind`` labels or its offsets do not cut its blobs."""
    meta, t = _read(data, kind, BLOBS)
    raw, offsets, sums = t["blobs"].tobytes(), t["offsets"].astype(np.int64), t["checksums"]
    n = len(offsets) - 1
    if n < 0 or offsets[0] != 0 or offsets[-1] != len(raw) or np.any(np.diff(offsets) < 0) or sums.shape != (n, 16):
        raise ValueError("the blobs answer's offsets and checksums do not match its blobs")
    hexed = sums.tobytes().hex()
    return meta, [raw[offsets[i] : offsets[i + 1]] for i in range(n)], [hexed[32 * i : 32 * i + 32] for i in range(n)]


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


_ST_DTYPES = {"u1": "U8", "u2": "U16", "u4": "U32", "f2": "F16", "i4": "I32", "i8": "I64"}
BLOBS, ARRAYS = "blobs", "arrays"
"""The two encodings of an answer's labels (metadata ``encoding``; none: arrays)."""


def _read(data: bytes, kind: str, encoding: str = ARRAYS) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    header_len = int.from_bytes(data[:8], "little")
    meta = json.loads(data[8 : 8 + header_len]).get("__metadata__", {})
    if meta.get("format") not in WIRE_FORMATS_READ:
        raise ValueError(f"not a {WIRE_FORMAT} payload (format {meta.get('format')!r})")
    got = meta.get("kind", "topk")
    if got != kind:
        raise ValueError(f"a {got!r} labels payload where {kind!r} labels were expected")
    if meta.get("encoding", ARRAYS) != encoding:
        raise ValueError(f"labels encoded as {meta.get('encoding', ARRAYS)!r} where {encoding!r} were expected")
    return meta, st_load(data)


def decode_wire(data: bytes) -> SoftLabels:
    """Parse top-k ``encode_wire`` bytes into torch tensors (ids int64, log-probs and tail float32)."""
    meta, t = _read(data, "topk")
    return _soft_labels(t["ids"], t["logprobs"], t["tail"], t["lengths"], json.loads(meta.get("hashes", "[]")), meta)


def decode_wire_blobs(data: bytes) -> tuple[SoftLabels, list[int]]:
    """Top-k ``encode_blobs_wire`` bytes decoded here: (the labels of the good blobs, in order, with their
    hashes; the indices of the blobs that failed their checksum or decoding, left out)."""
    meta, blobs, sums = decode_blobs_wire(data, "topk")
    hashes, k = _answer_hashes(meta, len(blobs)), int(meta["k"])
    batch, bad = unpack_label_batch(blobs, sums, k)
    return _soft_labels(batch.ids, batch.logprobs, batch.tail, batch.lengths, _without(hashes, bad), meta), bad


def _soft_labels(ids: np.ndarray, logprobs: np.ndarray, tail: np.ndarray, lengths: np.ndarray, hashes: list[str],
                 meta: dict[str, Any]) -> SoftLabels:
    return SoftLabels(ids=torch.from_numpy(ids.astype(np.int64)), logprobs=_float32(logprobs), tail=_float32(tail),
                      lengths=torch.from_numpy(lengths.astype(np.int64)), hashes=hashes, k=int(meta["k"]),
                      temperature=float(meta["temperature"]))


def _answer_hashes(meta: dict[str, Any], n: int) -> list[str]:
    hashes = json.loads(meta.get("hashes", "[]"))
    if not isinstance(hashes, list) or len(hashes) != n:
        raise ValueError(f"the answer names {len(hashes)} hashes for {n} windows")
    return hashes


def _without(items: list[str], bad: list[int]) -> list[str]:
    drop = set(bad)
    return [x for i, x in enumerate(items) if i not in drop]


def _float32(a: np.ndarray) -> torch.Tensor:
    """float16 values as a float32 tensor, converted by numpy (about 0.06 ms for a batch's top-32 labels).

    Not by torch: labels are decoded on the trainer's prefetch thread, and with torch ops there, however
    small, the main thread's compute threads slept and woke hundreds of times a training step, which got
    about 10% slower on 2 cores (likely: that thread's own OpenMP team, and with more OpenMP threads than
    cores the runtime stops spinning between parallel regions).
    """
    return torch.from_numpy(np.asarray(a, dtype=np.float32))


def wire_metadata(data: bytes) -> dict[str, str]:
    """The metadata of ``encode_wire`` bytes (all strings), read from the header alone; {} when it has none."""
    header_len = int.from_bytes(data[:8], "little")
    meta = json.loads(data[8 : 8 + header_len]).get("__metadata__", {})
    return dict(meta) if isinstance(meta, dict) else {}
def decode_sampled_wire(data: bytes) -> SampledLabels:
    """Parse ``encode_sampled_wire`` bytes into torch tensors (ids and counts int64)."""
    meta, t = _read(data, "sample")
    return _sampled_labels(t["ids"], t["counts"], t["lengths"], json.loads(meta.get("hashes", "[]")), meta)


def decode_sampled_wire_blobs(data: bytes) -> tuple[SampledLabels, list[int]]:
    """``decode_wire_blobs`` for sampled labels: (the good blobs' labels, padded; the bad blobs' indices)."""
    meta, blobs, sums = decode_blobs_wire(data, "sample")
    hashes = _answer_hashes(meta, len(blobs))
    good, bad = unpack_sampled_batch(blobs, sums)
    return _sampled_labels(*pad_sampled(good), _without(hashes, bad), meta), bad


def _sampled_labels(ids: np.ndarray, counts: np.ndarray, lengths: np.ndarray, hashes: list[str],
                    meta: dict[str, Any]) -> SampledLabels:
    return SampledLabels(ids=torch.from_numpy(ids.astype(np.int64)), counts=torch.from_numpy(counts.astype(np.int64)),
                         lengths=torch.from_numpy(lengths.astype(np.int64)), hashes=hashes, draws=int(meta["draws"]),
                         temperature=float(meta["temperature"]))
