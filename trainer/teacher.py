"""The selector service as the trainer sees it: checked against the run up front, used in phase one only."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import numpy as np

from shared.client import SelectorClient, SelectorError
from shared.data import PackedDataset
from shared.errors import SaltError
from trainer.config import TrainConfig
from trainer.distributed import World
from trainer.prefetch import LabelPrefetcher, PrefetchStats, StepData
from trainer.sampling import batch_indices

log = logging.getLogger(__name__)

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
        svc = cfg.service
        if svc.labels_from:
            return cls._from_export(cfg, ds, world)
        if not svc.urls:
            raise SaltError(f"mode {cfg.mode} needs a selector service", "pass --service-url")
        client = SelectorClient(svc.urls, api_key=svc.api_key, retry_deadline_s=svc.retry_deadline_s)
        try:
            info = client.model_info()
            _check_service(info, cfg, ds)
            pool = selection_indices(client, cfg.selection, ds, info) if cfg.mode == "salt_ds" else None
            return cls(cfg, ds, client, info, pool, world)
        except SelectorError as e:
            client.close()
            raise SaltError(f"selector service at {svc.service_url} failed: {e}",
                            "start it with `salt serve` (or fix --service-url / SALT_API_KEY)") from e
        except BaseException:
            client.close()
            raise

    @classmethod
    def _from_export(cls, cfg: TrainConfig, ds: PackedDataset, world: World | None) -> Teacher:
        """A label export read in place of the service, checked against the run as the service is."""
        from trainer.export import ExportedLabels

        if cfg.kd.kd_labels != "topk":
            raise SaltError(f"a label export holds top-k labels; --kd-labels {cfg.kd.kd_labels} needs the service",
                            "pass --kd-labels topk, or --service-url instead of --labels-from")
        if cfg.kd.kd_until == "auto":
            raise SaltError("--kd-until auto compares the student with the SLM's validation loss, which a label "
                            "export does not hold", "pass --service-url instead of --labels-from, or --kd-until n_kd")
        labels = ExportedLabels(str(cfg.service.labels_from))
        info = labels.model_info()
        _check_service(info, cfg, ds)
        if cfg.kd.kd_temperature != labels.manifest["temperature"]:
            raise SaltError(f"{labels.folder} holds labels at temperature {labels.manifest['temperature']}, the run "
                            f"asks {cfg.kd.kd_temperature}", "export again with the run's --kd-temperature")
        client: Any = labels  # answers the calls the trainer makes of a SelectorClient
        pool = selection_indices(client, cfg.selection, ds, info) if cfg.mode == "salt_ds" else None
        return cls(cfg, ds, client, info, pool, world)

    def indices_for(self, step: int, micro: int) -> np.ndarray:
        """Train-split indices of this rank's phase-one windows of (step, micro): a pure function, so a
        resumed run asks for the same ones."""
        n = len(self.pool) if self.pool is not None else len(self.ds.train)
        optim = self.cfg.optim
        idx = self.world.shard(batch_indices(step, micro, n=n, batch_size=optim.batch_size,
                                             grad_accum=optim.grad_accum, seed=self.cfg.seed))
        return self.pool[idx] if self.pool is not None else idx

    def windows_for(self, step: int, micro: int) -> np.ndarray:
        """Phase-one windows of (step, micro): (B, T + 1)."""
        return np.asarray(self.ds.train.windows[self.indices_for(step, micro)])

    def digests_for(self, step: int, micro: int) -> np.ndarray:
        """(B, 16) uint8 hashes of ``windows_for(step, micro)``, as prepare stored them (computed from the
        windows only for a dataset written before hash files)."""
        return self.ds.train.digests_at(self.indices_for(step, micro))

    def start(self, steps: range) -> None:
        self.prefetcher = LabelPrefetcher(
            self.client, self.windows_for, steps, grad_accum=self.cfg.optim.grad_accum, k=self.cfg.kd.kd_k,
            temperature=self.cfg.kd.kd_temperature, policy=self.cfg.service.fault_policy,
            depth=self.cfg.service.prefetch_depth, digests_for=self.digests_for, kind=self.cfg.kd.kd_labels,
            draws=self.cfg.kd.kd_draws,
        )

    def get(self, step: int) -> StepData:
        assert self.prefetcher is not None, "start() first"
        return self.prefetcher.get(step)

    def stop_before(self, step: int) -> None:
        """Phase one ends before ``step``: the prefetcher asks no labels from there on."""
        if self.prefetcher is not None:
            self.prefetcher.stop_before(step)

    def val_loss(self, windows: np.ndarray, *, chunk: int = 64) -> float:
        """The SLM's mean next-token loss (nats) over (N, T + 1) windows, from the service's per-window scores
        (its mean loss and token count per window, cached by the service, so asking again costs no forward)."""
        total, tokens = 0.0, 0
        try:
            for start in range(0, len(windows), chunk):
                for score in self.client.scores(windows[start : start + chunk]):
                    total += score.mean_loss * score.n_tokens
                    tokens += score.n_tokens
        except (SelectorError, httpx.HTTPError) as e:
            raise SaltError(f"the selector service failed to score the validation windows: {e}",
                            "restart the service and pass --resume") from e
        return total / max(tokens, 1)

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
            "url": self.cfg.service.service_url or self.cfg.service.labels_from,
            "model_fingerprint": self.info.get("fingerprint"),
            "requests": stats.requests, "fallback_batches": stats.fallback_batches, "errors": stats.errors[:5],
        }
        for key, name in USAGE_METRICS.items():
            if self._before is not None and self._after is not None:
                out[key] = self._after.get(name, 0.0) - self._before.get(name, 0.0)
            else:
                out[key] = None  # the service's counters could not be read
        return out


TOKENIZER_FIX = ("serve an SLM with this dataset's tokenizer, or prepare the data with the SLM's "
                 "(salt prepare --tokenizer <model folder>)")


def _check_service(info: dict[str, object], cfg: TrainConfig, ds: PackedDataset) -> None:
    vocab, tok_hash, slm = info.get("vocab_size"), info.get("tokenizer_hash"), info.get("preset", "?")
    if vocab != ds.vocab_size:
        raise SaltError(f"the service's SLM ({slm}) has a vocabulary of {vocab}, the dataset {ds.path} "
                        f"{ds.vocab_size}", TOKENIZER_FIX)
    if tok_hash is not None and tok_hash != ds.tokenizer_hash:
        raise SaltError(f"the service's SLM ({slm}) uses another tokenizer ({str(tok_hash)[:12]}) than the dataset "
                        f"{ds.path} ({ds.tokenizer_hash[:12]})", TOKENIZER_FIX)
    block = info.get("block_size")
    if not isinstance(block, int) or block < ds.seq_len:
        raise SaltError(f"the service's SLM has a context of {block}, shorter than the dataset's windows "
                        f"({ds.seq_len})", "serve an SLM with a longer context")
    _check_labels(info.get("label_defaults"), cfg)


def _check_labels(defaults: object, cfg: TrainConfig) -> None:
    """The run's label kind and its k or draws within what the service serves."""
    defaults = defaults if isinstance(defaults, dict) else {}
    if cfg.kd.kd_labels == "sample":
        if "sample" not in defaults.get("kinds", []):
            raise SaltError("the service does not serve sampled labels (an older version)",
                            "upgrade the service, or pass --kd-labels topk")
        max_draws = defaults.get("max_draws")
        if isinstance(max_draws, int) and cfg.kd.kd_draws > max_draws:
            raise SaltError(f"kd_draws {cfg.kd.kd_draws} is above the service's limit {max_draws}",
                            f"pass --kd-draws {max_draws} or less")
        return
    max_k = defaults.get("max_k")
    if isinstance(max_k, int) and cfg.kd.kd_k > max_k:
        raise SaltError(f"kd_k {cfg.kd.kd_k} is above the service's limit {max_k}", f"pass --kd-k {max_k} or less")


def selection_indices(
    client: SelectorClient, selection: str | None, ds: PackedDataset, info: dict[str, object]
) -> np.ndarray:
    """Train-split indices of a stored selection of any method, checked against the run's dataset and, for a
    selection by one model's scores, against the SLM the service runs (a two-model selection names its
    own models: any teacher sharing the tokenizer may teach on it)."""
    if not selection:
        raise SaltError("mode salt_ds needs a stored selection", "pass --selection (see `salt select`)")
    sel = client.selection(selection)
    if not sel.get("models") and sel.get("model_fingerprint") != info.get("fingerprint"):
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
