"""``curves.json``: every run's evaluation curve, KD end step and timings, small enough to commit beside
``results.json`` so that every number of ``results.md`` can be recomputed from committed files.

One entry per run: its label (``mode``), seed, kind (the training mode), steps, KD end step, timings and
``evals``, rows of ``[step, val_loss, val_acc, llm_s]`` where ``llm_s`` is the LLM's own time (step time
less data wait) summed over the steps up to that evaluation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shared.errors import SaltError
from trainer.recipe.metrics import finished_summary, read_metrics

CURVES = "curves.json"
COLUMNS = ("step", "val_loss", "val_acc", "llm_s")


def kd_end_of(summary: dict[str, Any]) -> tuple[int | None, str]:
    """The step at which a run's phase one ended, and where it comes from: the run's own ``kd_end_step``
    (``run``), else the configured n_kd (``config``); None for a run without KD."""
    if summary.get("kd_end_step") is not None:
        return int(summary["kd_end_step"]), "run"
    n_kd = int(summary.get("kd_steps") or 0)
    return (n_kd, "config") if n_kd > 0 else (None, "none")


def teacher_steps_of(summary: dict[str, Any], kd_end: int | None) -> int:
    """Steps that asked the teacher: phase one up to its end, plus a falling transition's steps."""
    if kd_end is None:
        return 0
    extra = max(0, int(summary.get("phase_one_end") or 0) - int(summary.get("kd_steps") or 0))
    return min(int(summary["steps"]), kd_end + extra)


def _llm_time_at(records: list[dict[str, Any]], steps: list[int], summary: dict[str, Any]) -> list[float]:
    """The LLM's own seconds up to each of ``steps``: summed from the per-step records, or, for runs whose
    records lack step times, the summary's total pro-rated over the steps."""
    train = sorted((r for r in records if r["kind"] == "train"), key=lambda r: r["step"])
    if not train or any("step_s" not in r for r in train):
        total = summary.get("train_s", 0.0) - summary.get("data_wait_s", 0.0)
        return [total * s / summary["steps"] for s in steps]
    out, cum, i = [], 0.0, 0
    for s in steps:
        while i < len(train) and train[i]["step"] <= s:
            cum += train[i]["step_s"] - train[i].get("data_wait_s", 0.0)
            i += 1
        out.append(cum)
    return out


def run_curve(label: str, seed: int, run: str | Path) -> dict[str, Any]:
    """A finished run's entry of ``curves.json``, read from its metrics and summary."""
    summary = finished_summary(run)
    records = read_metrics(run)
    evals = sorted((r["step"], r["val_loss"], r["val_acc"]) for r in records if r["kind"] == "eval")
    if not evals:
        raise SaltError(f"{run} holds no evaluation", "re-run the training")
    llm_at = _llm_time_at(records, [e[0] for e in evals], summary)
    kd_end, source = kd_end_of(summary)
    svc = summary.get("service") or {}
    return {
        "mode": label, "seed": seed, "kind": summary["mode"], "run": str(run), "steps": summary["steps"],
        "kd_end_step": kd_end, "kd_end_from": source, "teacher_steps": teacher_steps_of(summary, kd_end),
        "llm_s": summary.get("train_s", 0.0) - summary.get("data_wait_s", 0.0),
        "teacher_s": summary.get("teacher_s", 0.0), "stall": summary.get("data_stall_fraction", 0.0),
        "cache_hits": svc.get("cache_hits"), "cache_misses": svc.get("cache_misses"),
        "slm_forwards": svc.get("slm_forward_passes"), "fallback_batches": summary.get("fallback_batches", 0),
        "evals": [[s, v, a, t] for (s, v, a), t in zip(evals, llm_at, strict=True)],
    }


def write_curves(curves: list[dict[str, Any]], out: Path) -> Path:
    """Write ``curves.json`` into ``out``: one run per line, so that a diff shows which run changed."""
    path = out / CURVES
    runs = ",\n".join("  " + json.dumps(c) for c in curves)
    path.write_text(f'{{"columns": {json.dumps(list(COLUMNS))}, "runs": [\n{runs}\n]}}\n')
    return path


def read_curves(folder: str | Path) -> list[dict[str, Any]]:
    """The runs of a ``curves.json`` (refused, with the fix, when it is missing or not one)."""
    path = Path(folder) / CURVES
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise SaltError(f"cannot read {path}: {e}",
                        "pass a folder where `salt experiment` wrote curves.json (results written before "
                        "curves.json existed cannot be recomputed)") from e
    if not isinstance(data, dict) or list(data.get("columns", ())) != list(COLUMNS) or not data.get("runs"):
        raise SaltError(f"{path} is not a curves.json of columns {', '.join(COLUMNS)}",
                        "pass what `salt experiment` wrote")
    return list(data["runs"])
