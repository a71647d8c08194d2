"""Soft labels asked by window hash: the digests sent, every answer checked, the labels put back in order.

Free of I/O like ``core``: ``Operations.soft_labels_by_hash`` sends, this module decides. A check that
fails raises ``SelectorError`` with code ``bad_answer``: labels of another model, precision, label kind,
k, temperature or window are never used silently.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from typing import Any, TypeAlias, TypeVar

import numpy as np
import torch

from shared.client.core import SelectorError, Windows
from shared.data import HASH_BYTES
from shared.labels import SoftLabels
from shared.sampling import SampledLabels
from shared.wire import (
    decode_sampled_wire,
    decode_sampled_wire_blobs,
    decode_wire,
    decode_wire_blobs,
    wire_metadata,
)

Digests: TypeAlias = np.ndarray | bytes | Sequence[str]
"""N window hashes: an (N, 16) uint8 array (``WindowSplit.digests`` rows), N x 16 raw bytes, or N hex strings."""
MissingWindows: TypeAlias = Windows | Callable[[np.ndarray], Windows]
"""The windows of the request ((N, L+1), row i hashing to hash i), or a function of the positions the service
lacks, (M,) int64, returning those M windows only."""


def digest_body(hashes: Digests) -> tuple[bytes, list[str]]:
    """The request body (16 raw bytes per window) and the same hashes in hex; ValueError when malformed."""
    if isinstance(hashes, np.ndarray):
        if hashes.ndim != 2 or hashes.shape[1] != HASH_BYTES or hashes.dtype != np.uint8:
            raise ValueError(f"digests are an (N, {HASH_BYTES}) uint8 array, got {hashes.dtype} {hashes.shape}")
        raw = np.ascontiguousarray(hashes).tobytes()
    elif isinstance(hashes, bytes | bytearray | memoryview):
        raw = bytes(hashes)
        if len(raw) % HASH_BYTES:
            raise ValueError(f"{len(raw)} bytes of digests is not a multiple of {HASH_BYTES}")
    else:
        if any(len(h) != 2 * HASH_BYTES for h in hashes):
            raise ValueError(f"window hashes are {2 * HASH_BYTES} hex digits each")
        raw = bytes.fromhex("".join(hashes))
    hexed = raw.hex()
    step = 2 * HASH_BYTES
    return raw, [hexed[i : i + step] for i in range(0, len(hexed), step)]


def bad_answer(problem: str) -> SelectorError:
    return SelectorError(0, "bad_answer", f"the service's answer does not match the request: {problem}; "
                                          "check that every replica serves the same SLM and precision")


Decoded: TypeAlias = tuple[Any, dict[str, str], list[int]]
"""A decoded answer: its labels, its metadata and the answered rows whose blobs were bad (left out)."""


def decode_topk(data: bytes) -> Decoded:
    """A top-k wire answer of arrays; an answer of another kind or format is a ``bad_answer``."""
    return _decoded(data, lambda: (decode_wire(data), []))


def decode_topk_blobs(data: bytes) -> Decoded:
    """A top-k wire answer of stored blobs, checked and decoded here; a blob that fails is a bad row."""
    return _decoded(data, lambda: decode_wire_blobs(data))


def decode_sampled(data: bytes) -> Decoded:
    """A sampled-label wire answer of arrays; another kind or format is a ``bad_answer``."""
    return _decoded(data, lambda: (decode_sampled_wire(data), []))


def decode_sampled_blobs(data: bytes) -> Decoded:
    """A sampled-label wire answer of stored blobs, checked and decoded here."""
    return _decoded(data, lambda: decode_sampled_wire_blobs(data))


def _decoded(data: bytes, decode: Callable[[], tuple[Any, list[int]]]) -> Decoded:
    try:
        labels, bad = decode()
        return labels, wire_metadata(data), bad
    except (ValueError, KeyError) as e:
        raise bad_answer(str(e)) from e


def missing_positions(meta: dict[str, str], n: int) -> list[int]:
    """The request positions a by-hash answer names as not cached: ascending, each in [0, n)."""
    try:
        missing = json.loads(meta["missing"])
        count = int(meta["count"])
    except (KeyError, ValueError) as e:
        raise bad_answer(f"no valid 'missing' and 'count' ({e})") from e
    ok = isinstance(missing, list) and all(type(i) is int and 0 <= i < n for i in missing)
    if count != n or not ok or missing != sorted(set(missing)):
        raise bad_answer(f"'missing' is not a list of ascending positions among the {n} asked")
    return missing


def check_answer(labels: SoftLabels, meta: dict[str, str], *, hashes: list[str], info: dict[str, Any], k: int,
                 temperature: float) -> None:
    """Refuse an answer unless it holds top-k labels of exactly ``hashes`` (in that order), at ``k`` and
    ``temperature``, from the model and precision that the answering replica's ``/v1/model`` (``info``) names."""
    _check_source(meta, info, "topk")
    if labels.k != k or labels.ids.shape[-1] != k or labels.temperature != temperature:
        raise bad_answer(f"k {labels.k} (ids of {labels.ids.shape[-1]}) at temperature {labels.temperature}, "
                         f"asked k {k} at {temperature}")
    _check_hashes(labels.hashes, labels.ids.shape[0], hashes)


def check_sampled_answer(labels: SampledLabels, meta: dict[str, str], *, hashes: list[str], info: dict[str, Any],
                         draws: int, temperature: float) -> None:
    """``check_answer`` for sampled labels: of exactly ``hashes``, ``draws`` draws at ``temperature``."""
    _check_source(meta, info, "sample")
    if labels.draws != draws or labels.temperature != temperature:
        raise bad_answer(f"{labels.draws} draws at temperature {labels.temperature}, asked {draws} at {temperature}")
    _check_hashes(labels.hashes, labels.ids.shape[0], hashes)


def _check_source(meta: dict[str, str], info: dict[str, Any], kind: str) -> None:
    if meta.get("model") != info.get("fingerprint"):
        raise bad_answer(f"labels of model {meta.get('model')}, while the replica serves {info.get('fingerprint')}")
    if meta.get("precision") != info.get("precision"):
        raise bad_answer(f"labels at precision {meta.get('precision')}, the replica runs {info.get('precision')}")
    if meta.get("kind", "topk") != kind:
        raise bad_answer(f"labels of kind {meta.get('kind')}, not {kind}")


def _check_hashes(got: list[str], rows: int, hashes: list[str]) -> None:
    if got != hashes or rows != len(hashes):
        diff = next((i for i, (a, b) in enumerate(zip(hashes, got, strict=False)) if a != b), None)
        where = f"window {diff}: asked {hashes[diff]}, answered {got[diff]}" if diff is not None else (
            f"{rows} windows answered, {len(hashes)} asked")
        raise bad_answer(f"other windows than asked ({where})")


def check_same_model(models: dict[str, dict[str, Any]]) -> None:
    """Refuse replicas that serve different models or precisions (their labels would be mixed in one batch)."""
    served = {(m.get("fingerprint"), m.get("precision")) for m in models.values()}
    if len(served) > 1:
        listing = ", ".join(f"{url}: {m.get('fingerprint')} {m.get('precision')}" for url, m in models.items())
        raise SelectorError(0, "replicas_differ", f"the replicas serve different models or precisions ({listing}); "
                                                  "serve one SLM at one precision behind every URL")


def windows_at(windows: MissingWindows, positions: list[int]) -> Windows:
    """The windows at ``positions`` of the request (from the array given, or from the function)."""
    idx = np.asarray(positions, dtype=np.int64)
    if callable(windows):
        return windows(idx)
    if isinstance(windows, np.ndarray):
        return windows[idx]
    return [windows[i] for i in positions]


Labels = TypeVar("Labels", SoftLabels, SampledLabels)


def merged(n: int, found: Labels, found_at: list[int], computed: Labels, computed_at: list[int],
           hashes: list[str]) -> Labels:
    """One batch in request order from the cached labels (rows ``found_at``) and the computed ones; every
    computed row goes to each position whose hash is its (``computed_at``: each hash's first position).
    Every tensor of the labels (top-k or sampled) is padded with zeros to the longer and wider of the two.
    Done in numpy: it runs on the trainer's prefetch thread, where no torch op may run (``shared.wire._float32``)."""
    row_of = {hashes[p]: j for j, p in enumerate(computed_at)}
    found_set = set(found_at)
    missing_at = [p for p in range(n) if p not in found_set]
    rows = np.asarray([row_of[hashes[p]] for p in missing_at], dtype=np.int64)
    out: dict[str, torch.Tensor] = {}
    for f in fields(computed):
        a, b = getattr(found, f.name), getattr(computed, f.name)
        if not isinstance(b, torch.Tensor):
            continue
        a_np, b_np = a.numpy(), b.numpy()
        shape = (n, *(max(x, y) for x, y in zip(a_np.shape[1:], b_np.shape[1:], strict=True)))
        t = np.zeros(shape, dtype=b_np.dtype)
        for part, at in ((a_np, found_at), (b_np[rows], missing_at)):
            if at:
                t[(np.asarray(at, dtype=np.int64), *(slice(0, d) for d in part.shape[1:]))] = part
        out[f.name] = torch.from_numpy(t)
    return replace(computed, **out, hashes=list(hashes))
