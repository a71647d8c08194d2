"""``salt export``: cached soft labels and scores as safetensors shards any framework can read, and the
reader the trainer uses in place of the service.

A label export is a folder::

    manifest.json             what the labels are: the format, the SLM (fingerprint, precision, vocabulary,
                              context), k and temperature, the dataset (fingerprint, tokenizer hash, split),
                              the selection (id and its hashes in order, when one was exported) and the shards
    labels-00000.safetensors  one shard of up to ``shard_windows`` windows, each tensor's first axis a window:
        hashes    (n, 16) uint8    the window's content hash (shared.hashing.window_hash, as bytes)
        index     (n,)    int64    its position in the dataset's split
        ids       (n, L, k) int32  the SLM's top-k next-token ids, most probable first
        logprobs  (n, L, k) float16 their log-probs at the temperature
        tail      (n, L)  float16  log of the mass outside the top-k (<= -1e4: none)
        mean_loss, median_loss, top1_acc, mean_entropy, salt_ds  (n,) float32 (salt_ds NaN: not selectable)
        embedding (n, C) float16   mean last hidden state

Shards are written to a temporary name and renamed, and the manifest last: a folder with a manifest is
complete, and an interrupted export resumes after its last whole shard.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

from shared.client import SelectorClient, SelectorError
from shared.data import PackedDataset
from shared.errors import SaltError
from shared.hashing import window_hash
from shared.labels import TAIL_FLOOR, SoftLabels

FORMAT = "salt-labels/1"
MANIFEST = "manifest.json"
SCORE_FIELDS = ("mean_loss", "median_loss", "top1_acc", "mean_entropy", "salt_ds")


def _shard_name(i: int) -> str:
    return f"labels-{i:05d}.safetensors"


def export_labels(client: SelectorClient, ds: PackedDataset, out: str | Path, *, selection: str | None = None,
                  split: str = "train", k: int = 32, temperature: float = 1.0, shard_windows: int = 4096,
                  request_windows: int = 64, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Write the labels and scores of a split (or of a stored selection's windows, in its order) from the
    service to ``out``; returns the manifest. Windows already cached are read, the others computed once."""
    out = Path(out)
    info = client.model_info()
    if info.get("tokenizer_hash") != ds.tokenizer_hash:
        raise SaltError(f"the service's SLM uses another tokenizer than {ds.path}", "serve the dataset's SLM")
    windows = ds.split(split).windows
    sel = client.selection(selection) if selection else None
    index = _selected(ds, split, sel, selection) if sel is not None else np.arange(len(windows), dtype=np.int64)
    manifest: dict[str, Any] = {
        "format": FORMAT, "model_fingerprint": info["fingerprint"], "precision": info["precision"],
        "vocab_size": info["vocab_size"], "block_size": info["block_size"], "k": k, "temperature": temperature,
        "dataset_fingerprint": ds.fingerprint, "tokenizer_hash": ds.tokenizer_hash, "split": split,
        "window_len": ds.window_len, "count": len(index), "selection": selection,
        "selection_hashes": None if sel is None else list(sel["hashes"]), "shards": [],
    }
    out.mkdir(parents=True, exist_ok=True)
    for i, start in enumerate(range(0, len(index), shard_windows)):
        idx = index[start : start + shard_windows]
        name = _shard_name(i)
        if not (out / name).is_file():  # resumed: whole shards already written are kept
            tmp = out / f".{name}.tmp"
            save_file(_shard(client, np.asarray(windows[idx], dtype=np.int64), ds.split(split).digests_at(idx), idx,
                             k, temperature, request_windows), str(tmp))
            os.replace(tmp, out / name)
        manifest["shards"].append({"file": name, "count": len(idx)})
        if progress is not None:
            progress(start + len(idx), len(index))
    tmp = out / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, out / MANIFEST)
    return manifest


def _selected(ds: PackedDataset, split: str, sel: dict[str, Any], selection: str | None) -> np.ndarray:
    if sel.get("dataset_fingerprint") != ds.fingerprint:
        raise SaltError(f"selection {selection} was made over another dataset than {ds.path}",
                        "pass the dataset the selection was made from")
    position = {h: i for i, h in reversed(list(enumerate(ds.split(split).hashes)))}
    missing = sum(h not in position for h in sel["hashes"])
    if missing:
        raise SaltError(f"{missing} windows of selection {selection} are not in the {split} split of {ds.path}",
                        "pass the dataset and split the selection was made from")
    return np.asarray([position[h] for h in sel["hashes"]], dtype=np.int64)


def _shard(client: SelectorClient, windows: np.ndarray, digests: np.ndarray, idx: np.ndarray, k: int,
           temperature: float, request_windows: int) -> dict[str, np.ndarray]:
    """One shard's tensors; labels asked by hash (cached windows are not uploaded), scores by window."""
    parts: dict[str, list[np.ndarray]] = {}
    for s in range(0, len(windows), request_windows):
        w = windows[s : s + request_windows]
        labels = client.soft_labels_by_hash(digests[s : s + request_windows], w, k=k, temperature=temperature)
        rows = client.scores(w)
        got = {
            "ids": labels.ids.to(torch.int32).numpy(), "logprobs": labels.logprobs.to(torch.float16).numpy(),
            "tail": labels.tail.to(torch.float16).numpy(),
            "embedding": np.stack([r.embedding for r in rows]).astype(np.float16),
            **{f: np.asarray([np.nan if getattr(r, f) is None else getattr(r, f) for r in rows], np.float32)
               for f in SCORE_FIELDS},
        }
        for name, arr in got.items():
            parts.setdefault(name, []).append(arr)
    return {"hashes": np.asarray(digests, dtype=np.uint8), "index": idx.astype(np.int64),
            **{n: np.concatenate(a) for n, a in parts.items()}}


class ExportedLabels:
    """A label export read in place of the service: it answers the calls the trainer makes of a client
    (``model_info``, ``selection``, ``soft_labels``) from the shards, which are loaded into memory once."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        path = self.folder / MANIFEST
        if not path.is_file():
            raise SaltError(f"{self.folder} is not a finished label export (no {MANIFEST})",
                            "run `salt export` to the end (it resumes) or pass the export's folder")
        self.manifest: dict[str, Any] = json.loads(path.read_text())
        if self.manifest.get("format") != FORMAT:
            raise SaltError(f"{path}: format {self.manifest.get('format')!r} is not {FORMAT}", "export again")
        self._rows: dict[bytes, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for shard in self.manifest["shards"]:
            t = load_file(str(self.folder / shard["file"]))
            for j, h in enumerate(t["hashes"]):
                self._rows[h.tobytes()] = (t["ids"][j], t["logprobs"][j], t["tail"][j])
        self.base_urls: list[str] = []

    def model_info(self) -> dict[str, Any]:
        m = self.manifest
        return {"fingerprint": m["model_fingerprint"], "precision": m["precision"], "vocab_size": m["vocab_size"],
                "block_size": m["block_size"], "tokenizer_hash": m["tokenizer_hash"],
                "label_defaults": {"k": m["k"], "max_k": m["k"], "temperature": m["temperature"]}}

    def selection(self, selection_id: str) -> dict[str, Any]:
        m = self.manifest
        if m.get("selection") != selection_id:
            held = f"selection {m['selection']}" if m.get("selection") else "no selection"
            raise SaltError(f"{self.folder} holds {held}, not {selection_id}", "pass the selection that was exported")
        return {"id": selection_id, "hashes": m["selection_hashes"], "model_fingerprint": m["model_fingerprint"],
                "dataset_fingerprint": m["dataset_fingerprint"], "tokenizer_hash": m["tokenizer_hash"]}

    def soft_labels(self, windows: np.ndarray, k: int = 32, temperature: float = 1.0) -> SoftLabels:
        """The exported labels of (N, L+1) windows, cut to ``k`` (at most the exported k)."""
        return self._labels([bytes.fromhex(window_hash(w)) for w in windows], k, temperature)

    def soft_labels_by_hash(self, hashes: np.ndarray, windows: object = None, k: int = 32,
                            temperature: float = 1.0) -> SoftLabels:
        """The exported labels of windows named by their (N, 16) uint8 hashes (``windows`` is not needed)."""
        return self._labels([bytes(h) for h in np.asarray(hashes, dtype=np.uint8)], k, temperature)

    def _labels(self, digests: list[bytes], k: int, temperature: float) -> SoftLabels:
        m = self.manifest
        if k > m["k"] or temperature != m["temperature"]:
            raise SelectorError(0, "export", f"{self.folder} holds labels at k={m['k']}, temperature "
                                f"{m['temperature']}; the run asks k={k}, temperature {temperature}; export again "
                                "with the run's settings")
        missing = sum(d not in self._rows for d in digests)
        if missing:  # a fault of the label source, handled by the run's fault policy as a service's is
            raise SelectorError(0, "export", f"{missing} of {len(digests)} windows are not in the export "
                                f"{self.folder}; export the windows the run trains on (the selection, or the split)")
        rows = [self._rows[d] for d in digests]
        # numpy only: this runs on the trainer's prefetch thread, where no torch op may run (shared.wire._float32)
        logprobs = np.stack([r[1] for r in rows]).astype(np.float32)  # (N, L, K)
        tail = np.stack([r[2] for r in rows]).astype(np.float32)  # (N, L)
        if k < m["k"]:  # the ids cut off join the tail
            joined = np.concatenate([tail[..., None], logprobs[..., k:]], -1)  # (N, L, 1 + K - k)
            tail = np.maximum(np.logaddexp.reduce(joined, axis=-1), TAIL_FLOOR).astype(np.float32)
        return SoftLabels(
            ids=torch.from_numpy(np.stack([r[0][:, :k] for r in rows]).astype(np.int64)),
            logprobs=torch.from_numpy(np.ascontiguousarray(logprobs[..., :k])), tail=torch.from_numpy(tail),
            lengths=torch.from_numpy(np.full(len(rows), rows[0][0].shape[0], dtype=np.int64)),
            hashes=[d.hex() for d in digests], k=k, temperature=temperature)

    def metrics_by_replica(self) -> list[dict[str, float]]:
        return []

    def close(self) -> None:
        pass
