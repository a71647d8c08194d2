"""Soft labels and window scores: the math, and the binary formats on the wire and in the cache.

Shared by the selector service (which computes and stores them) and the trainer (which reads them).

Shapes: B = windows, L = predicted positions per window, V = vocabulary, k = kept ids, C = n_embd.

Soft labels at temperature T, per predicted position: the teacher's top-k ids (most probable first),
their log-probs ``log_softmax(logits / T)`` and the tail, the log of the mass outside the top-k. An
empty tail (k = V) would be ``-inf``; it is stored as ``TAIL_FLOOR`` (-1e4, finite in float16, and
``exp(-1e4)`` is exactly 0 in every float type), and every value at or below it means "no mass".

Wire format (``WIRE_MEDIA_TYPE``): safetensors bytes holding
``ids`` (N, L, k) uint8/uint16/uint32 (narrowest that holds the vocabulary), ``logprobs`` (N, L, k)
float16, ``tail`` (N, L) float16 and ``lengths`` (N,) int32; windows shorter than L are zero-padded
past their length. Metadata (all strings): ``format`` = ``WIRE_FORMAT``, ``k``, ``temperature``,
``model`` (fingerprint), ``precision`` and ``hashes`` (JSON list of window hashes, in request order).

Storage (one cache row per window): ``zstd(header | ids | logprobs | tail)`` with a blake2b-128
checksum of the compressed bytes kept beside it and checked on every read (see ``pack_labels``).
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
import zstandard
from safetensors.numpy import load as st_load

TAIL_FLOOR = -1e4
"""Stored value of an empty tail (and the lowest log-prob kept); float16-safe."""
SALT_DS_TOPK = 10
"""A position counts toward SALT_DS when its true token is in the SLM's top-10."""
WIRE_FORMAT = "salt-softlabels-v1"
WIRE_MEDIA_TYPE = "application/x-safetensors"

_LABEL_MAGIC = b"SLB1"
_SCORE_MAGIC = b"SSC1"
_LABEL_HEADER = struct.Struct("<4sBHI")  # magic, id itemsize, k, L
_SCORE_HEADER = struct.Struct("<4sI6d")  # magic, C, n_tokens mean median top1 entropy salt_ds
_ID_DTYPES = {1: np.dtype("u1"), 2: np.dtype("<u2"), 4: np.dtype("<u4")}


class BlobError(ValueError):
    """A stored blob failed its checksum or could not be decoded (it must be recomputed)."""


@dataclass
class SoftLabels:
    """Top-k soft labels for a batch of windows.

    Attributes:
        ids: (B, L, k) int64 token ids, most probable first.
        logprobs: (B, L, k) float32 log-probs of those ids.
        tail: (B, L) float32 log of the remaining mass (``<= TAIL_FLOOR`` means none).
        lengths: (B,) int64 predicted positions per window (positions past it are padding).
        hashes: window hashes in order (empty when unknown).
        k: kept ids per position.
        temperature: temperature the log-probs were computed at.
    """

    ids: torch.Tensor
    logprobs: torch.Tensor
    tail: torch.Tensor
    lengths: torch.Tensor
    hashes: list[str]
    k: int
    temperature: float


@dataclass
class WindowScore:
    """Learnability figures of one window (all at temperature 1)."""

    hash: str
    n_tokens: int
    mean_loss: float
    median_loss: float
    top1_acc: float
    mean_entropy: float
    salt_ds: float | None
    """Median loss over positions whose true token is in the top-10; None: not selectable."""
    embedding: np.ndarray
    """(C,) float16 mean of the last hidden state over the window's positions."""


def id_dtype(vocab_size: int) -> np.dtype:
    """The narrowest unsigned dtype that holds every id of a vocabulary."""
    if vocab_size <= 1 << 8:
        return np.dtype("u1")
    if vocab_size <= 1 << 16:
        return np.dtype("<u2")
    return np.dtype("<u4")


def topk_soft_labels(
    logits: torch.Tensor, k: int, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-k soft labels of a batch of logits.

    Args:
        logits: (B, L, V) next-token logits, any float dtype.
        k: ids to keep per position, 1 <= k <= V.
        temperature: softmax temperature, > 0.

    Returns:
        ids (B, L, k) int64, logprobs (B, L, k) float32, tail (B, L) float32 (floored at TAIL_FLOOR).
    """
    V = logits.shape[-1]
    if not 1 <= k <= V:
        raise ValueError(f"k must be in [1, {V}], got {k}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    return topk_from_logprobs(F.log_softmax(logits.float() / temperature, dim=-1), k)


def topk_from_logprobs(logp: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``topk_soft_labels`` from log-probs already computed at the wanted temperature: (B, L, V) float32."""
    top_lp, top_ids = logp.topk(k, dim=-1)  # (B, L, k), sorted descending
    # The tail as a logsumexp over the ids left out: exact even when the top-k holds almost all the mass,
    # where log1p(-sum(p_topk)) would cancel catastrophically.
    rest = logp.scatter(-1, top_ids, float("-inf"))  # (B, L, V)
    tail = torch.logsumexp(rest, dim=-1)  # (B, L); -inf when k == V
    return top_ids, top_lp.clamp_min(TAIL_FLOOR), tail.clamp_min(TAIL_FLOOR)


def window_scores(
    logits: torch.Tensor, targets: torch.Tensor, hidden: torch.Tensor, *, logprobs: torch.Tensor | None = None
) -> dict[str, np.ndarray]:
    """Per-window learnability figures from one forward pass (temperature 1).

    Args:
        logits: (B, L, V) next-token logits.
        targets: (B, L) int64 true next tokens.
        hidden: (B, L, C) last hidden states.
        logprobs: (B, L, V) float32 ``log_softmax(logits)`` when the caller has it already.

    Returns:
        dict of arrays: ``n_tokens`` (B,) int64, ``mean_loss``, ``median_loss``, ``top1_acc``,
        ``mean_entropy``, ``salt_ds`` (B,) float64 (NaN: no position qualifies, not selectable) and
        ``embedding`` (B, C) float16.
    """
    logp = F.log_softmax(logits.float(), dim=-1) if logprobs is None else logprobs  # (B, L, V)
    entropy = -(logp.exp() * logp).sum(-1)  # (B, L)
    top10 = logp.topk(min(SALT_DS_TOPK, logp.shape[-1]), dim=-1).indices  # (B, L, 10)
    return _scores_from(logp, top10, targets, entropy, hidden)


def labels_and_scores(
    logits: torch.Tensor, targets: torch.Tensor, hidden: torch.Tensor, label_params: list[tuple[int, float]]
) -> tuple[dict[str, np.ndarray], dict[tuple[int, float], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]]:
    """Scores and every wanted label set from one forward pass's outputs, sharing the full-vocabulary work.

    Equal (within float rounding) to ``window_scores`` and ``topk_soft_labels``, which are the plain
    references; this path computes each softmax, exponential and top-k once per temperature. The tail
    is the sum of the probabilities outside the top-k (positive terms only: no cancellation); a tail
    under float32's smallest normal (about e^-87) is reported as ``TAIL_FLOOR``.

    Args:
        logits: (B, L, V); targets: (B, L) int64; hidden: (B, L, C).
        label_params: (k, temperature) pairs wanted.

    Returns:
        scores as ``window_scores`` gives them, and {(k, T): (ids (B, L, k), logprobs (B, L, k), tail (B, L))}.
    """
    V = logits.shape[-1]
    logits = logits.float()
    labels = {}
    scores: dict[str, np.ndarray] = {}
    for t in sorted({t for _, t in label_params} | {1.0}):
        ks = sorted({k for k, tt in label_params if tt == t})
        logp = F.log_softmax(logits if t == 1.0 else logits / t, dim=-1)  # (B, L, V)
        p = logp.exp()  # (B, L, V)
        kmax = max([*ks, min(SALT_DS_TOPK, V) if t == 1.0 else 1])
        top_lp, top_ids = logp.topk(kmax, dim=-1)  # (B, L, kmax), sorted descending
        if t == 1.0:
            entropy = -torch.einsum("blv,blv->bl", p, logp)  # (B, L)
            scores = _scores_from(logp, top_ids[..., : min(SALT_DS_TOPK, V)], targets, entropy, hidden)
        done = 0
        for k in ks:  # ascending: the top-k sets are nested, so p is zeroed a slice at a time
            p.scatter_(-1, top_ids[..., done:k], 0.0)
            done = k
            tail = p.sum(-1).log() if k < V else torch.full(p.shape[:-1], float("-inf"), device=p.device)
            labels[(k, t)] = (top_ids[..., :k], top_lp[..., :k].clamp_min(TAIL_FLOOR), tail.clamp_min(TAIL_FLOOR))
    return scores, labels


def _scores_from(
    logp: torch.Tensor, top10: torch.Tensor, targets: torch.Tensor, entropy: torch.Tensor, hidden: torch.Tensor
) -> dict[str, np.ndarray]:
    B, L, _ = logp.shape
    loss = -logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (B, L)
    in_top10 = (top10 == targets.unsqueeze(-1)).any(-1)  # (B, L)
    top1 = (top10[..., 0] == targets).float()  # (B, L)
    return {
        "n_tokens": np.full(B, L, dtype=np.int64),
        "mean_loss": loss.double().mean(-1).cpu().numpy(),
        "median_loss": _masked_median(loss, torch.ones_like(in_top10)).cpu().numpy(),
        "top1_acc": top1.double().mean(-1).cpu().numpy(),
        "mean_entropy": entropy.double().mean(-1).cpu().numpy(),
        "salt_ds": _masked_median(loss, in_top10).cpu().numpy(),
        "embedding": hidden.float().mean(1).to(torch.float16).cpu().numpy(),
    }


def _masked_median(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Median (mean of the two middle values when even) of each row over masked entries; NaN if none.

    values, mask: (B, L). Returns (B,) float64.
    """
    v = values.double().masked_fill(~mask, float("inf"))
    s = v.sort(dim=-1).values  # (B, L); masked-out entries last
    n = mask.sum(-1)  # (B,)
    lo = ((n - 1).clamp_min(0) // 2).unsqueeze(-1)
    hi = (n // 2).clamp_max(values.shape[-1] - 1).unsqueeze(-1)
    med = (s.gather(-1, lo) + s.gather(-1, hi)).squeeze(-1) / 2
    return med.masked_fill(n == 0, float("nan"))


# ---------------------------------------------------------------- storage blobs (one per cache row)


def checksum(blob: bytes) -> str:
    """blake2b-128 of a stored blob, in hex."""
    return hashlib.blake2b(blob, digest_size=16).hexdigest()


def pack_labels(ids: np.ndarray, logprobs: np.ndarray, tail: np.ndarray, vocab_size: int) -> bytes:
    """One window's labels as a compressed blob: ids (L, k), logprobs (L, k) float16, tail (L,) float16.

    Layout before zstd: header, then ids, log-probs and tail, each byte-shuffled (all first bytes, then
    all second bytes...). The log-probs go as differences of their float16 bit patterns along k: they
    are sorted, so the differences are small numbers that compress well, and the coding is lossless.
    """
    dt = id_dtype(vocab_size)
    L, k = ids.shape
    bits = np.ascontiguousarray(logprobs, dtype="<f2").view("<u2")
    delta = np.diff(bits, axis=-1, prepend=np.zeros((L, 1), dtype="<u2")).astype("<u2")  # wraps mod 2^16
    raw = b"".join((
        _LABEL_HEADER.pack(_LABEL_MAGIC, dt.itemsize, k, L),
        _shuffle(np.ascontiguousarray(ids, dtype=dt)),
        _shuffle(delta),
        _shuffle(np.ascontiguousarray(tail, dtype="<f2")),
    ))
    return zstandard.ZstdCompressor(level=3).compress(raw)


def unpack_labels(blob: bytes, expected_checksum: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of ``pack_labels`` after checking the checksum; raises BlobError on any damage."""
    raw = _open_blob(blob, expected_checksum)
    try:
        magic, size, k, L = _LABEL_HEADER.unpack_from(raw)
        if magic != _LABEL_MAGIC or size not in _ID_DTYPES:
            raise BlobError("not a soft-label blob")
        off = _LABEL_HEADER.size
        n_ids = L * k * size
        if len(raw) != off + n_ids + 2 * L * k + 2 * L:
            raise BlobError("soft-label blob has the wrong length")
        ids = _unshuffle(raw[off : off + n_ids], _ID_DTYPES[size]).reshape(L, k)
        delta = _unshuffle(raw[off + n_ids : off + n_ids + 2 * L * k], np.dtype("<u2")).reshape(L, k)
        lp = np.cumsum(delta, axis=-1, dtype="<u2").view("<f2")
        tail = _unshuffle(raw[off + n_ids + 2 * L * k :], np.dtype("<f2"))
    except (struct.error, ValueError) as e:
        raise BlobError(f"corrupt soft-label blob: {e}") from e
    return ids, lp, tail


def _shuffle(a: np.ndarray) -> bytes:
    """Bytes of ``a`` grouped by position within each element (byte 0 of all, then byte 1...)."""
    return np.frombuffer(a.tobytes(), np.uint8).reshape(-1, a.dtype.itemsize).T.tobytes()


def _unshuffle(data: bytes, dtype: np.dtype) -> np.ndarray:
    planes = np.frombuffer(data, np.uint8).reshape(dtype.itemsize, -1)
    return np.ascontiguousarray(planes.T).view(dtype).reshape(-1)


def pack_scores(row: dict[str, float], embedding: np.ndarray) -> bytes:
    """One window's scores (keys of ``window_scores``) and its (C,) embedding as a compressed blob."""
    emb = np.ascontiguousarray(embedding, dtype="<f2")
    header = _SCORE_HEADER.pack(
        _SCORE_MAGIC, emb.size, row["n_tokens"], row["mean_loss"], row["median_loss"], row["top1_acc"],
        row["mean_entropy"], row["salt_ds"],
    )
    return zstandard.ZstdCompressor(level=3).compress(header + emb.tobytes())


def unpack_scores(blob: bytes, expected_checksum: str, window_hash: str) -> WindowScore:
    """Inverse of ``pack_scores`` after checking the checksum; raises BlobError on any damage."""
    raw = _open_blob(blob, expected_checksum)
    try:
        magic, C, n, mean, median, top1, ent, ds = _SCORE_HEADER.unpack_from(raw)
        if magic != _SCORE_MAGIC:
            raise BlobError("not a score blob")
        emb = np.frombuffer(raw, "<f2", C, _SCORE_HEADER.size)
    except (struct.error, ValueError) as e:
        raise BlobError(f"corrupt score blob: {e}") from e
    return WindowScore(window_hash, int(n), mean, median, top1, ent, None if np.isnan(ds) else ds, emb)


def _open_blob(blob: bytes, expected_checksum: str) -> bytes:
    if checksum(blob) != expected_checksum:
        raise BlobError("checksum mismatch")
    try:
        return zstandard.ZstdDecompressor().decompress(blob)
    except zstandard.ZstdError as e:
        raise BlobError(f"cannot decompress blob: {e}") from e


# ---------------------------------------------------------------- wire format (answers to programs)


def encode_wire(
    ids: np.ndarray, logprobs: np.ndarray, tail: np.ndarray, lengths: np.ndarray, *, vocab_size: int,
    metadata: dict[str, str],
) -> bytes:
    """Safetensors bytes of a batch: ids (N, L, k), logprobs (N, L, k), tail (N, L), lengths (N,).

    Written here rather than by ``safetensors.numpy.save`` so the bytes are deterministic (sorted header
    keys): the same labels always give the same answer, byte for byte.
    """
    tensors = {
        "ids": np.ascontiguousarray(ids, dtype=id_dtype(vocab_size)),
        "logprobs": np.ascontiguousarray(logprobs, dtype="<f2"),
        "tail": np.ascontiguousarray(tail, dtype="<f2"),
        "lengths": np.ascontiguousarray(lengths, dtype="<i4"),
    }
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


def decode_wire(data: bytes) -> SoftLabels:
    """Parse ``encode_wire`` bytes into torch tensors (ids int64, log-probs and tail float32)."""
    header_len = int.from_bytes(data[:8], "little")
    meta = json.loads(data[8 : 8 + header_len]).get("__metadata__", {})
    if meta.get("format") != WIRE_FORMAT:
        raise ValueError(f"not a {WIRE_FORMAT} payload (format {meta.get('format')!r})")
    t = st_load(data)
    return SoftLabels(
        ids=torch.from_numpy(t["ids"].astype(np.int64)),
        logprobs=torch.from_numpy(t["logprobs"].astype(np.float32)),
        tail=torch.from_numpy(t["tail"].astype(np.float32)),
        lengths=torch.from_numpy(t["lengths"].astype(np.int64)),
        hashes=json.loads(meta.get("hashes", "[]")),
        k=int(meta["k"]),
        temperature=float(meta["temperature"]),
    )
