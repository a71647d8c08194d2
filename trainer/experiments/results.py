"""An experiment's results, computed from its runs' curves only (``curves.json``: evaluations, KD end steps and
timings, read from the runs' metrics and summaries): per run and per mode. ``recompute`` rebuilds
``results.md`` from a folder's committed ``results.json`` and ``curves.json`` alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from shared.errors import SaltError
from trainer.experiments.config import ExperimentConfig
from trainer.experiments.curves import read_curves, run_curve
from trainer.experiments.measures import leads, reach_step, time_to, value_at
from trainer.experiments.stages import slm_dir
from trainer.recipe.metrics import finished_summary

AT = 0.7
"""The fraction of the baseline's steps where the "at 70%" columns are read."""


def collect(cfg: ExperimentConfig, runs: dict[tuple[str, int], Path]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The results and the curves of an experiment's runs, read from their metrics and summaries only."""
    curves = [run_curve(label, seed, path) for (label, seed), path in sorted(runs.items())]
    slm_run = slm_dir(cfg)
    slm = finished_summary(slm_run)
    info = {"run": str(slm_run), "val_loss": slm["val_loss"], "train_s": slm.get("train_s")}
    return compute(cfg, info, curves), curves


def _row(c: dict[str, Any], base: dict[str, Any] | None, budget: int, slm_share_s: float) -> dict[str, Any]:
    """One run's figures from its curve; ``base`` is its seed's baseline curve (None: no baseline)."""
    ev = c["evals"]
    loss = [(e[0], e[1]) for e in ev]  # (step, val loss)
    target = base["evals"][-1][1] if base is not None else None
    at = AT * budget
    inside = ev[0][0] <= at <= ev[-1][0]
    reach = reach_step(loss, target) if target is not None else None
    time = None
    if reach is not None:
        share = slm_share_s if c["kind"] != "baseline" else 0.0
        time = time_to(reach, [(e[0], e[3]) for e in ev], c["teacher_s"], c["teacher_steps"], share)
    return {
        "mode": c["mode"], "seed": c["seed"], "run": c["run"], "steps": c["steps"],
        "final_loss": ev[-1][1], "final_acc": ev[-1][2], "step_70": at,
        "loss_70": value_at(loss, at) if inside else None,
        "acc_70": value_at([(e[0], e[2]) for e in ev], at) if inside else None,
        "kd_end_step": c["kd_end_step"], "kd_end_from": c["kd_end_from"],
        "reach_step": reach, "reach_fraction": reach / budget if reach is not None else None,
        "saving": reach is not None and reach < budget,
        "lead": None if base is None or c["kind"] == "baseline" else leads(
            loss, [(e[0], e[1]) for e in base["evals"]], budget, c["kd_end_step"]),
        "time_to_reach": time, "time_to_reach_s": time["total_s"] if time else None, "time_ratio": None,
        **{k: c[k] for k in ("llm_s", "teacher_s", "stall", "cache_hits", "cache_misses", "slm_forwards",
                             "fallback_batches")},
    }


def _mean_std(values: list[float | None]) -> dict[str, float] | None:
    """Mean and sample std (0 for one value); None when there is no value or any is missing."""
    if not values or any(v is None for v in values):
        return None
    a = np.array(values, dtype=float)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0}


def _aggregate(mine: list[dict[str, Any]], kind: str, steps: int) -> dict[str, Any]:
    """A mode's figures over its seeds. Reach and wall-clock are over the runs that reached the target
    (``reached`` of ``n``); their worst is None when a run never did."""
    agg: dict[str, Any] = {"n": len(mine), "mode": kind, "steps": steps}
    for key in ("final_loss", "final_acc", "loss_70", "acc_70", "llm_s", "teacher_s"):
        agg[key] = _mean_std([r[key] for r in mine])
    reached = [r for r in mine if r["reach_fraction"] is not None]
    never = len(reached) < len(mine)
    fractions = [r["reach_fraction"] for r in reached]
    ratios = [r["time_ratio"] for r in reached if r["time_ratio"] is not None]
    agg.update({
        "reached": len(reached), "saved": sum(r["saving"] for r in mine),
        "reach_fraction_mean": float(np.mean(fractions)) if fractions else None,
        "reach_fraction_worst": None if never else max(fractions),
        "time_to_reach_s": _mean_std([r["time_to_reach_s"] for r in reached]),
        "time_ratio": _mean_std(ratios),
        "time_ratio_worst": None if never or len(ratios) < len(mine) else max(ratios),
        "kd_end_steps": [r["kd_end_step"] for r in mine],
        **{f"lead_{k}": _mean_std([(r["lead"] or {}).get(k) for r in mine]) for k in ("at_80", "needed_80")},
    })
    return agg


def compute(cfg: ExperimentConfig, slm: dict[str, Any], curves: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-run and per-mode figures from the runs' curves (no file is read). The SLM's training time is
    shared evenly over the KD runs of the experiment, which all use it."""
    kd_runs = sum(c["kind"] != "baseline" for c in curves)
    share = (slm.get("train_s") or 0.0) / kd_runs if kd_runs else 0.0
    base = {c["seed"]: c for c in curves if c["mode"] == "baseline"}
    rows = [_row(c, base.get(c["seed"]), cfg.llm_steps, share) for c in curves]
    base_time = {r["seed"]: r["time_to_reach_s"] for r in rows if r["mode"] == "baseline"}
    for r in rows:
        if r["time_to_reach_s"] is not None and base_time.get(r["seed"]):
            r["time_ratio"] = r["time_to_reach_s"] / base_time[r["seed"]]
    modes = {label: _aggregate([r for r in rows if r["mode"] == label], kind, steps)
             for label, kind, steps in cfg.arms if any(r["mode"] == label for r in rows)}
    return {"config": cfg.to_dict(), "slm": {**slm, "kd_runs": kd_runs, "share_s": share},
            "runs": rows, "modes": modes}


def load_results(path: str | Path) -> dict[str, Any]:
    """``results.json`` from a file or the experiment folder that holds it."""
    p = Path(path)
    if p.is_dir():
        p = p / "results.json"
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise SaltError(f"cannot read experiment results {p}: {e}", "pass results.json files or their folders") from e
    if not isinstance(data, dict) or not {"config", "slm", "modes"} <= set(data):
        raise SaltError(f"{p} is not an experiment's results.json", "pass what `salt experiment` wrote")
    if not data["config"].get("name"):  # unnamed: known by the folder it is in
        data["config"]["name"] = p.resolve().parent.name
    return data


def recompute(folder: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """An experiment's results recomputed from the ``results.json`` (its config and SLM) and ``curves.json``
    in ``folder`` alone, and the curves."""
    stored = load_results(folder)
    curves = read_curves(folder)
    slm = {k: stored["slm"].get(k) for k in ("run", "val_loss", "train_s")}
    return compute(ExperimentConfig.from_dict(stored["config"]), slm, curves), curves
