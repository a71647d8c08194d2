"""Prometheus metrics of one app, in a registry of its own (several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics

# The *_created series double the exposition for no use here.
disable_created_metrics()

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)


class Metrics:
    """The service's counters and histograms."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("salt_requests", "HTTP requests", ["route", "method", "status"], registry=r)
        self.latency = Histogram(
            "salt_request_latency_seconds", "HTTP request latency", ["route"], buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.cache_hits = Counter("salt_cache_hits", "Windows answered from the cache", registry=r)
        self.cache_misses = Counter("salt_cache_misses", "Windows not in the cache (computed)", registry=r)
        self.cache_bad_blobs = Counter("salt_cache_bad_blobs", "Cached blobs that failed their checksum",
                                       registry=r)
        self.forward_passes = Counter("salt_forward_passes", "Forward passes of the SLM", registry=r)
        self.windows_computed = Counter("salt_windows_computed", "Windows run through the SLM", registry=r)
        self.tokens_computed = Counter("salt_tokens_computed", "Tokens run through the SLM", registry=r)
        self.forward_seconds = Histogram("salt_forward_seconds", "Time of one forward pass with its post-processing",
                                         buckets=_LATENCY_BUCKETS, registry=r)
        self.batch_windows = Histogram("salt_forward_batch_windows", "Windows per forward pass",
                                       buckets=_SIZE_BUCKETS, registry=r)
        self.batch_tokens = Histogram("salt_forward_batch_tokens", "Tokens per forward pass",
                                      buckets=tuple(b * 64 for b in _SIZE_BUCKETS), registry=r)
