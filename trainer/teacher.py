"""Phase-one data: windows plus the SLM's soft labels, fetched from the service ahead of the training loop.

A background thread walks the phase-one steps in order, asks the service for each micro-batch's soft
labels and keeps up to ``depth`` steps ready in a bounded queue. The loop takes them in order and
measures how long it waited (the data stall). A service fault, after the client's retries, either
fails the run or, under the ``fallback`` policy, hands that micro-batch over without labels so it
trains on cross-entropy alone.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import numpy as np
import torch

from shared.client import SelectorClient, SelectorError
from shared.data import PackedDataset
from shared.errors import SaltError
from shared.softlabels import SoftLabels
from trainer.config import TrainConfig
from trainer.distributed import World
from trainer.sampling import batch_indices

log = logging.getLogger(__name__)
FAULT_POLICIES = ("fail", "fallback")


@dataclass
class MicroBatch:
    windows: torch.Tensor
    """(B, T + 1) int64 windows."""
    labels: SoftLabels | None
    """Soft labels for ``windows[:, :-1]``; None when the service failed and the policy is ``fallback``."""


@dataclass
class StepData:
    step: int
    micro: list[MicroBatch]
    fetch_s: float
    """Seconds the service took for this step's labels (teacher time)."""


@dataclass
class _Failure:
    step: int
    error: SelectorError


@dataclass
class PrefetchStats:
    requests: int = 0
    fallback_batches: int = 0
    teacher_s: float = 0.0
    errors: list[str] = field(default_factory=list)


class TeacherFault(RuntimeError):
    """The service failed for a phase-one batch and the policy is ``fail``."""

    def __init__(self, step: int, error: SelectorError) -> None:
        super().__init__(f"selector service failed at step {step + 1}: {error}")
        self.step = step
        self.error = error


class LabelPrefetcher:
    """Fetches phase-one micro-batches with soft labels on a background thread, ``depth`` steps ahead.

    Args:
        client: the service client (its retries and deadline apply per request).
        windows_for: ``(step, micro) -> (B, T + 1) int64 array``; a pure function of its arguments.
        steps: the phase-one steps to fetch, in order.
        grad_accum: micro-batches per step.
        k, temperature: label parameters.
        policy: ``fail`` or ``fallback``.
        depth: steps kept ready ahead of the loop.
    """

    def __init__(
        self, client: SelectorClient, windows_for: Callable[[int, int], np.ndarray], steps: range, *,
        grad_accum: int, k: int, temperature: float, policy: str, depth: int = 4,
    ) -> None:
        if policy not in FAULT_POLICIES:
            raise ValueError(f"unknown fault policy {policy!r}; choose one of {', '.join(FAULT_POLICIES)}")
        self.client = client
        self.windows_for = windows_for
        self.steps = steps
        self.grad_accum = grad_accum
        self.k = k
        self.temperature = temperature
        self.policy = policy
        self.stats = PrefetchStats()
        self._queue: queue.Queue[StepData | _Failure] = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="label-prefetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for step in self.steps:
            t0 = time.perf_counter()
            micro = []
            for m in range(self.grad_accum):
                windows = self.windows_for(step, m)
                labels: SoftLabels | None = None
                try:
                    self.stats.requests += 1
                    labels = self.client.soft_labels(windows, k=self.k, temperature=self.temperature)
                except (SelectorError, httpx.HTTPError, ValueError) as exc:
                    e = exc if isinstance(exc, SelectorError) else SelectorError(0, "transport", str(exc))
                    self.stats.errors.append(str(e))
                    if self.policy == "fail":
                        self._put(_Failure(step, e))
                        return
                    self.stats.fallback_batches += 1
                    log.warning("step %d: service failed (%s); this batch trains on cross-entropy alone", step + 1, e)
                micro.append(MicroBatch(torch.from_numpy(windows.astype(np.int64)), labels))
            dt = time.perf_counter() - t0
            self.stats.teacher_s += dt
            if not self._put(StepData(step, micro, dt)):
                return

    def _put(self, item: StepData | _Failure) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def get(self, step: int) -> StepData:
        """The data of ``step`` (blocks until it is ready); raises TeacherFault under the ``fail`` policy."""
        item = self._queue.get()
        if isinstance(item, _Failure):
            raise TeacherFault(item.step, item.error)
        if item.step != step:
            raise RuntimeError(f"prefetcher out of order: expected step {step}, got {item.step}")
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


USAGE_METRICS = {
    "cache_hits": "salt_cache_hits_total",
    "cache_misses": "salt_cache_misses_total",
    "slm_forward_passes": "salt_forward_passes_total",
    "windows_computed": "salt_windows_computed_total",
}


class Teacher:
    """The selector service as the trainer sees it: checked up front, used in phase one only."""

    def __init__(self, cfg: TrainConfig, ds: PackedDataset, client: SelectorClient, info: dict[str, object],
                 pool: np.ndarray | None, world: World | None = None) -> None:
        self.cfg = cfg
        self.world = world or World()
        """Under torchrun, this rank asks the service for its shard of each global micro-batch only."""
        self.ds = ds
        self.client = client
        self.info = info
        self.pool = pool
        """Train-split indices phase one draws from (the selection under ``salt_ds``); None: all windows."""
        self.prefetcher: LabelPrefetcher | None = None
        self._before = self._metrics()
        self._after: dict[str, float] | None = None
        self._closed = False

    @classmethod
    def connect(cls, cfg: TrainConfig, ds: PackedDataset, world: World | None = None) -> Teacher:
        """Connect and check the service against the run: vocabulary, tokenizer, context, k, selection."""
        urls = [u.strip() for u in (cfg.service_url or "").split(",") if u.strip()]
        if not urls:
            raise SaltError(f"mode {cfg.mode} needs a selector service", "pass --service-url")
        client = SelectorClient(urls, api_key=os.environ.get("SALT_API_KEY") or None,
                                retry_deadline_s=cfg.retry_deadline_s)
        try:
            info = client.model_info()
            _check_service(info, cfg, ds)
            pool = selection_indices(client, cfg.selection, ds, info) if cfg.mode == "salt_ds" else None
            return cls(cfg, ds, client, info, pool, world)
        except SelectorError as e:
            client.close()
            raise SaltError(f"selector service at {cfg.service_url} failed: {e}",
                            "start it with `salt serve` (or fix --service-url / SALT_API_KEY)") from e
        except BaseException:
            client.close()
            raise

    def windows_for(self, step: int, micro: int) -> np.ndarray:
        """Phase-one windows of (step, micro): a pure function, so a resumed run asks for the same ones."""
        n = len(self.pool) if self.pool is not None else len(self.ds.train)
        idx = self.world.shard(batch_indices(step, micro, n=n, batch_size=self.cfg.batch_size,
                                             grad_accum=self.cfg.grad_accum, seed=self.cfg.seed))
        if self.pool is not None:
            idx = self.pool[idx]
        return np.asarray(self.ds.train.windows[idx])

    def start(self, steps: range) -> None:
        self.prefetcher = LabelPrefetcher(
            self.client, self.windows_for, steps, grad_accum=self.cfg.grad_accum, k=self.cfg.kd_k,
            temperature=self.cfg.kd_temperature, policy=self.cfg.fault_policy, depth=self.cfg.prefetch_depth,
        )

    def get(self, step: int) -> StepData:
        assert self.prefetcher is not None, "start() first"
        return self.prefetcher.get(step)

    def finish(self) -> None:
        """End of phase one: stop the prefetcher, read the service's counters once more, disconnect."""
        if self._closed:
            return
        if self.prefetcher is not None:
            self.prefetcher.close()
        self._after = self._metrics()
        self.client.close()
        self._closed = True

    def close(self) -> None:
        self.finish()

    def _metrics(self) -> dict[str, float] | None:
        """The service's counters summed over every replica URL (None if one cannot be read)."""
        total: dict[str, float] = {}
        try:
            for one in self.client.metrics_by_replica():
                for name, value in one.items():
                    total[name] = total.get(name, 0.0) + value
        except (SelectorError, httpx.HTTPError):
            return None
        return total

    def usage(self) -> dict[str, object]:
        """What this run asked of the service: requests, fallbacks and the service's counter deltas."""
        stats = self.prefetcher.stats if self.prefetcher is not None else PrefetchStats()
        out: dict[str, object] = {
            "url": self.cfg.service_url, "model_fingerprint": self.info.get("fingerprint"),
            "requests": stats.requests, "fallback_batches": stats.fallback_batches, "errors": stats.errors[:5],
        }
        for key, name in USAGE_METRICS.items():
            if self._before is not None and self._after is not None:
                out[key] = self._after.get(name, 0.0) - self._before.get(name, 0.0)
            else:
                out[key] = None  # the service's counters could not be read
        return out


def _check_service(info: dict[str, object], cfg: TrainConfig, ds: PackedDataset) -> None:
    vocab = info.get("vocab_size")
    if vocab != ds.vocab_size:
        raise SaltError(f"the service's SLM has a vocabulary of {vocab}, the dataset {ds.vocab_size}",
                        "serve an SLM trained on this dataset's tokenizer")
    tok_hash = info.get("tokenizer_hash")
    if tok_hash is not None and tok_hash != ds.tokenizer_hash:
        raise SaltError("the service's SLM uses another tokenizer than the dataset",
                        "serve an SLM trained on this dataset's tokenizer")
    block = info.get("block_size")
    if not isinstance(block, int) or block < ds.seq_len:
        raise SaltError(f"the service's SLM has a context of {block}, shorter than the dataset's windows "
                        f"({ds.seq_len})", "serve an SLM with a longer context")
    defaults = info.get("label_defaults")
    max_k = defaults.get("max_k") if isinstance(defaults, dict) else None
    if isinstance(max_k, int) and cfg.kd_k > max_k:
        raise SaltError(f"kd_k {cfg.kd_k} is above the service's limit {max_k}", f"pass --kd-k {max_k} or less")


def selection_indices(
    client: SelectorClient, selection: str | None, ds: PackedDataset, info: dict[str, object]
) -> np.ndarray:
    """Train-split indices of a stored selection, checked against the run's SLM and dataset."""
    if not selection:
        raise SaltError("mode salt_ds needs a stored selection", "pass --selection (see `salt select`)")
    sel = client.selection(selection)
    if sel.get("model_fingerprint") != info.get("fingerprint"):
        raise SaltError(f"selection {selection} was made by another SLM than the one the service runs",
                        "make a new selection with this SLM (`salt score` then `salt select`)")
    if sel.get("dataset_fingerprint") != ds.fingerprint or sel.get("tokenizer_hash") != ds.tokenizer_hash:
        raise SaltError(f"selection {selection} was made over another dataset or tokenizer than {ds.path}",
                        "pass the dataset the selection was made from, or make a new selection")
    hashes = list(sel.get("hashes", []))
    if not hashes:
        raise SaltError(f"selection {selection} is empty", "make a new selection")
    # Windows are found by content hash, so a selection over any pool of this dataset's windows works.
    position = {h: i for i, h in reversed(list(enumerate(ds.train.hashes)))}
    missing = sum(h not in position for h in hashes)
    if missing:
        raise SaltError(f"{missing} of the {len(hashes)} windows of selection {selection} are not in the train "
                        f"split of {ds.path}", "make a new selection over this dataset")
    return np.asarray([position[h] for h in hashes], dtype=np.int64)
