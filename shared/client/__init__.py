"""Typed client of the selector service (sync and async), used by the trainer and the tests.

Soft labels travel in the binary wire format (``shared.wire``). Connect errors, timeouts and 502/503/504
answers are retried with exponential backoff and jitter until ``retry_deadline_s``, moving on to the next
of the base URLs given; successive requests start at successive URLs (round-robin over replicas).
Any other 4xx/5xx raises ``SelectorError`` carrying the service's error body.

Each call is written once, free of I/O, in ``operations`` (on the retry policy of ``core``); ``sync`` and
``aio`` only run its requests and sleeps, with ``httpx.Client`` or ``httpx.AsyncClient``.
"""

from shared.client.aio import AsyncSelectorClient
from shared.client.core import SelectorError, parse_metrics
from shared.client.sync import SelectorClient

__all__ = ["AsyncSelectorClient", "SelectorClient", "SelectorError", "parse_metrics"]
