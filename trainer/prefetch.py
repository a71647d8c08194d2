"""Phase-one data: windows plus the SLM's soft labels, fetched from the service ahead of the training loop.

A background thread walks the phase-one steps in order, asks the service for each micro-batch's soft
labels and keeps up to ``depth`` steps ready in a bounded queue. The loop takes them in order and
measures how long it waited (the data stall). A service fault, after the client's retries, either
fails the run or, under the ``fallback`` policy, hands that micro-batch over without labels so it
trains on cross-entropy alone.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import numpy as np
import torch

from shared.client import SelectorClient, SelectorError
from shared.config import check_choice
from shared.labels import SoftLabels
from shared.sampling import DEFAULT_DRAWS, LabelKind, SampledLabels
from trainer.config.choices import FaultPolicy

log = logging.getLogger(__name__)


@dataclass
class MicroBatch:
    """Windows of one micro-batch, with the SLM's soft labels in phase one."""

    windows: torch.Tensor
    """(B, T + 1) int64 windows."""
    labels: SoftLabels | SampledLabels | None
    """Soft labels for ``windows[:, :-1]``; None in phase two, or when the service failed under ``fallback``."""

    @property
    def inputs(self) -> torch.Tensor:
        """(B, T) int64: what the model reads."""
        return self.windows[:, :-1]

    @property
    def targets(self) -> torch.Tensor:
        """(B, T) int64: the next token of each input position."""
        return self.windows[:, 1:]


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
        kind: ``topk`` or ``sample`` (then ``draws`` per position instead of k).
        policy: ``fail`` or ``fallback``.
        depth: steps kept ready ahead of the loop.
        digests_for: ``(step, micro) -> (B, 16) uint8`` hashes of ``windows_for(step, micro)``; when given,
            labels are asked by hash and only the windows the service lacks are sent.
    """

    def __init__(
        self, client: SelectorClient, windows_for: Callable[[int, int], np.ndarray], steps: range, *,
        grad_accum: int, k: int, temperature: float, policy: FaultPolicy, depth: int = 4,
        digests_for: Callable[[int, int], np.ndarray] | None = None,
        kind: LabelKind = "topk", draws: int = DEFAULT_DRAWS,
    ) -> None:
        check_choice("fault_policy", policy, FaultPolicy)
        self.client = client
        self.windows_for = windows_for
        self.digests_for = digests_for
        self.steps = steps
        self.grad_accum = grad_accum
        self.k = k
        self.kind = kind
        self.draws = draws
        self.temperature = temperature
        self.policy = policy
        self.stats = PrefetchStats()
        self._queue: queue.Queue[StepData | _Failure] = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._end = steps.stop
        """Steps from here on are not asked for (lowered by ``stop_before``)."""
        self._thread = threading.Thread(target=self._run, name="label-prefetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for step in self.steps:
            if step >= self._end:
                return
            t0 = time.perf_counter()
            micro = []
            for m in range(self.grad_accum):
                windows = self.windows_for(step, m)
                labels: SoftLabels | SampledLabels | None = None
                try:
                    self.stats.requests += 1
                    labels = self._labels(step, m, windows)
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

    def _labels(self, step: int, micro: int, windows: np.ndarray) -> SoftLabels | SampledLabels:
        if self.digests_for is None:
            if self.kind == "sample":
                return self.client.sampled_labels(windows, draws=self.draws, temperature=self.temperature)
            return self.client.soft_labels(windows, k=self.k, temperature=self.temperature)
        if self.kind == "sample":
            return self.client.sampled_labels_by_hash(self.digests_for(step, micro), windows, draws=self.draws,
                                                      temperature=self.temperature)
        return self.client.soft_labels_by_hash(self.digests_for(step, micro), windows, k=self.k,
                                               temperature=self.temperature)

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

    def stop_before(self, step: int) -> None:
        """Ask for no step from ``step`` on (phase one ended early); a request in flight still completes."""
        self._end = min(self._end, step)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
