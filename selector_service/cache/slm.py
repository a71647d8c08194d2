"""The SLM runner: the checkpoint loaded once, run on batches of windows, each forward pass turned into soft
labels, scores and embeddings."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from shared import postproc
from shared.device import native_bf16, resolve_device
from shared.errors import SaltError
from shared.labels import labels_and_scores
from shared.lm import load_lm
from shared.sampling import sample_labels, seed_of, trim

log = logging.getLogger("selector_service")


@dataclass
class Work:
    """One window to compute, with the soft-label parameters wanted for it."""

    window_hash: str
    window: np.ndarray
    """(L + 1,) int64 token ids: inputs ``window[:-1]``, targets ``window[1:]``."""
    label_params: set[tuple[int, float]] = field(default_factory=set)
    """Top-k labels wanted: (k, temperature) pairs."""
    samples: set[tuple[int, float]] = field(default_factory=set)
    """Sampled labels wanted: (draws, temperature) pairs."""


@dataclass
class Computed:
    """What one forward pass gives for one window (float16 where stored that way)."""

    scores: dict[str, float]
    embedding: np.ndarray  # (C,) float16
    labels: dict[tuple[int, float], tuple[np.ndarray, np.ndarray, np.ndarray]]
    """(k, temperature) -> ids (L, k) int64, logprobs (L, k) float16, tail (L,) float16."""
    sampled: dict[tuple[int, float], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    """(draws, temperature) -> ids (L, W) int64, counts (L, W) int64 (``shared.sampling.trim``-med)."""


def check_precision(precision: str, device: torch.device) -> torch.dtype:
    """The torch dtype of a precision setting, refusing bf16 where the hardware lacks it natively."""
    if precision == "fp32":
        return torch.float32
    if precision != "bf16":
        raise SaltError(f"unknown precision {precision!r}", "use fp32 or bf16")
    if not native_bf16(device):
        raise SaltError(
            f"bf16 asked for but {device.type} has no native bf16 support (it would run many times slower)",
            "set SALT_PRECISION=fp32",
        )
    return torch.bfloat16


def native_postprocessing(setting: str, device: torch.device) -> bool:
    """Whether the C extension turns logits into labels and scores (``SALT_CPU_POSTPROCESSING``)."""
    if setting not in ("auto", "c", "torch"):
        raise SaltError(f"unknown CPU post-processing {setting!r}", "use auto, c or torch")
    if device.type != "cpu" or setting == "torch":
        return False
    if postproc.available():
        return True
    if setting == "c":
        raise SaltError("SALT_CPU_POSTPROCESSING=c but the C extension shared._postproc is not built",
                        "reinstall the package with a C compiler present, or set SALT_CPU_POSTPROCESSING=torch")
    log.warning("the C extension shared._postproc is not built: labels and scores by torch, several times "
                "slower on the CPU (reinstall the package with a C compiler present)")
    return False


class SLMRunner:
    """An SLM ready for inference (a checkpoint written here or a Hugging Face causal LM): its facts
    (fingerprint, kind, vocabulary, context, tokenizer) and ``run``, which computes work items in shared
    forward passes. Labels cover the tokenizer's ids only: output rows past them (padding) are never
    computed."""

    def __init__(self, model_path: str, *, device: str = "auto", precision: str = "fp32", threads: int = 0,
                 head_chunk_tokens: int = 1024, cpu_postprocessing: str = "auto") -> None:
        self.head_chunk_tokens = head_chunk_tokens
        if threads:
            torch.set_num_threads(threads)
        self.device = resolve_device(device, fix="set SALT_DEVICE=cpu")
        self.native = native_postprocessing(cpu_postprocessing, self.device)
        """Whether labels and scores come from the C extension (``shared.postproc``)."""
        self.dtype = check_precision(precision, self.device)
        self.precision = precision
        lm = load_lm(model_path, device=self.device, dtype=self.dtype)
        self.model, self.tokenizer, self.kind, self.name = lm.model, lm.tokenizer, lm.kind, lm.name
        self.eot_id = lm.eot_id
        self.fingerprint, self.model_key = lm.fingerprint, f"{lm.fingerprint}:{precision}"
        self.tokenizer_hash = lm.tokenizer_hash
        """``shared.tokenizer.tokenizer_hash`` of the served tokenizer (pools must be prepared with it)."""
        self.num_params, self.vocab_size, self.output_rows, self.block_size = (
            lm.num_params, lm.vocab_size, lm.output_rows, lm.block_size)

    def warmup(self) -> None:
        window = np.zeros(min(self.block_size, 16) + 1, dtype=np.int64)
        self.run([Work("warmup", window, {(1, 1.0)})])

    @torch.inference_mode()
    def run(self, works: list[Work]) -> tuple[list[Computed], int]:
        """Compute every work item; windows of equal length share a forward pass.

        Returns:
            results in the order of ``works``, and the number of forward passes run.
        """
        out: list[Computed | None] = [None] * len(works)
        by_len: dict[int, list[int]] = {}
        for i, w in enumerate(works):
            by_len.setdefault(len(w.window), []).append(i)
        for idx in by_len.values():
            batch = torch.from_numpy(np.stack([works[i].window for i in idx])).to(self.device)  # (B, L+1)
            x, y = batch[:, :-1], batch[:, 1:]  # (B, L) each
            wanted = sorted({p for i in idx for p in works[i].label_params})
            # The output layer and its full-vocabulary post-processing run a few windows at a time: the
            # (rows, L, V) buffers then stay in the CPU's cache, which is much faster than one big pass. On the
            # CPU the body runs chunk by chunk too (its activations stay in cache; windows are independent), on
            # an accelerator on the whole batch at once.
            rows = max(1, self.head_chunk_tokens // x.shape[1])
            whole = self.model.hidden(x) if self.device.type != "cpu" else None  # (B, L, C)
            for start in range(0, len(idx), rows):
                chunk = slice(start, start + rows)
                hidden = whole[chunk] if whole is not None else self.model.hidden(x[chunk])  # (b, L, C)
                logits = self.model.head(hidden).float()  # (b, L, V)
                scores, computed = labels_and_scores(logits, y[chunk], hidden, wanted, native=self.native)
                labels = {  # float16 by numpy: a torch cast of this size would wake its thread pool
                    p: (ids.cpu().numpy(), lp.cpu().numpy().astype(np.float16), tail.cpu().numpy().astype(np.float16))
                    for p, (ids, lp, tail) in computed.items()
                }
                sampled = self._sampled(logits, [works[i] for i in idx[chunk]])
                for j, i in enumerate(idx[chunk]):
                    row = {name: float(scores[name][j]) for name in scores if name != "embedding"}
                    out[i] = Computed(
                        scores=row,
                        embedding=scores["embedding"][j],
                        labels={p: (labels[p][0][j], labels[p][1][j], labels[p][2][j]) for p in works[i].label_params},
                        sampled={p: sampled[p][j] for p in works[i].samples},
                    )
        return [o for o in out if o is not None], len(by_len)

    @staticmethod
    def _sampled(logits: torch.Tensor, works: list[Work]
                 ) -> dict[tuple[int, float], list[tuple[np.ndarray, np.ndarray]]]:
        """Every sampled label set wanted by any of these windows, per window (seeded by its hash)."""
        wanted = sorted({p for w in works for p in w.samples})
        if not wanted:
            return {}
        seeds = np.array([seed_of(w.window_hash) for w in works], dtype=np.uint64)
        out = {}
        for draws, t in wanted:
            ids, counts = (a.cpu().numpy() for a in sample_labels(logits, draws, t, seeds))  # (b, L, N) each
            out[(draws, t)] = [trim(ids[j], counts[j]) for j in range(len(works))]
        return out

    def forward_logits(self, windows: np.ndarray) -> torch.Tensor:
        """Plain forward of (B, L+1) windows' inputs: (B, L, V) float32 logits (for checks and the bench)."""
        with torch.inference_mode():
            x = torch.from_numpy(np.asarray(windows, dtype=np.int64)[:, :-1]).to(self.device)
            return self.model(x).float()
