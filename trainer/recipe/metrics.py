"""A run's ``metrics.jsonl`` and ``summary.json``: the one module that writes and reads them.

``metrics.jsonl`` holds one JSON line per optimizer step (``kind: train``) and per evaluation
(``kind: eval``: ``val_loss``, ``val_acc``); ``summary.json`` the final numbers of a finished run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

from shared.errors import SaltError

METRICS = "metrics.jsonl"
SUMMARY = "summary.json"

EvalPoint = tuple[int, float, float]
"""(step, val_loss, val_acc) of one evaluation."""


class MetricsSink(Protocol):
    def write(self, record: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class NoMetrics:
    """What ranks other than 0 write metrics to: nothing."""

    def write(self, record: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


class MetricsLog:
    """Append-only JSON lines; on resume, lines past the checkpoint's step are dropped (they are redone)."""

    def __init__(self, run: Path, *, resume_step: int | None) -> None:
        self.path = Path(run) / METRICS
        if resume_step is not None and self.path.exists():
            kept = [ln for ln in self.path.read_text().splitlines() if ln and json.loads(ln)["step"] <= resume_step]
            self.path.write_text("".join(ln + "\n" for ln in kept))
        self._f = self.path.open("a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self._f.write(json.dumps(record) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def read_metrics(run: str | Path) -> list[dict[str, Any]]:
    """Every record of a run's metrics file, in order."""
    path = Path(run) / METRICS
    if not path.is_file():
        raise SaltError(f"{path} not found", "pass a run folder written by `salt train`")
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


def eval_curve(run: str | Path) -> list[EvalPoint]:
    """The run's evaluations as (step, val_loss, val_acc), in step order."""
    return sorted((r["step"], r["val_loss"], r["val_acc"]) for r in read_metrics(run) if r["kind"] == "eval")


def last_eval(run: str | Path) -> dict[str, Any]:
    """The last evaluation record of a run."""
    evals = [r for r in read_metrics(run) if r["kind"] == "eval"]
    if not evals:
        raise SaltError(f"{Path(run) / METRICS} holds no evaluation", "re-run the training")
    return evals[-1]


def write_summary(run: Path, summary: dict[str, Any]) -> None:
    (run / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")


def read_summary(run: str | Path) -> dict[str, Any] | None:
    """A run's summary, or None when it has not finished."""
    path = Path(run) / SUMMARY
    return dict(json.loads(path.read_text())) if path.is_file() else None


def finished_summary(run: str | Path) -> dict[str, Any]:
    """A finished run's summary (refused, with the fix, when the run has not finished)."""
    summary = read_summary(run)
    if summary is None:
        raise SaltError(f"{run} is not a finished run (no {SUMMARY})", "finish or resume it")
    return summary
