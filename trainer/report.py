"""Run reports: a table in the paper's shape, and validation curves, rebuilt from saved metrics only.

``salt report RUN...`` (and ``salt demo``) write ``report.md`` and ``curves.png``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from shared.errors import SaltError
from trainer.train import SUMMARY, read_metrics


@dataclass
class RunResult:
    name: str
    summary: dict[str, Any]
    evals: list[tuple[int, float, float]]
    """(step, val_loss, val_acc) in step order."""

    @property
    def final_loss(self) -> float:
        return self.evals[-1][1]

    @property
    def final_acc(self) -> float:
        return self.evals[-1][2]

    def first_step_at_or_below(self, loss: float) -> int | None:
        """First evaluated step whose validation loss is at or below ``loss`` (None: never)."""
        return next((step for step, v, _ in self.evals if v <= loss), None)


def load_run(path: str | Path) -> RunResult:
    """A run folder's metrics and summary (refused if the run has not finished)."""
    p = Path(path)
    evals = sorted((r["step"], r["val_loss"], r["val_acc"]) for r in read_metrics(p) if r["kind"] == "eval")
    if not (p / SUMMARY).is_file() or not evals:
        raise SaltError(f"{p} is not a finished run (no summary.json or no evaluation)", "finish or resume it")
    return RunResult(p.name, json.loads((p / SUMMARY).read_text()), evals)


def _fmt_s(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds:,.0f} s"


def report_table(runs: list[RunResult], baseline: RunResult | None, teacher_train_s: float | None) -> list[str]:
    """Markdown lines: final numbers, steps to the baseline's final loss, wall-clock with the teacher apart."""
    lines = [
        "| run | mode | steps | final val log-ppl | final val acc | step reaching baseline final | "
        "% of steps | LLM time | teacher time (labels) | phase-one stall | fallback batches |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    target = baseline.final_loss if baseline else None
    for r in runs:
        s = r.summary
        reach = r.first_step_at_or_below(target) if target is not None else None
        pct = f"{reach / s['steps']:.0%}" if reach is not None else "—"
        llm_s = s.get("train_s", 0.0) - s.get("data_wait_s", 0.0)
        lines.append(
            f"| {r.name} | {s['mode']} | {s['steps']} | {r.final_loss:.4f} | {r.final_acc:.2%} | "
            f"{reach if reach is not None else 'not reached'} | {pct} | {_fmt_s(llm_s)} | "
            f"{_fmt_s(s.get('teacher_s'))} | {s.get('data_stall_fraction', 0.0):.1%} | {s.get('fallback_batches', 0)} |"
        )
    lines.append("")
    lines.append(
        "LLM time: the run's step time less the time it waited for data. Teacher time: the time the "
        "service took to answer phase-one label requests (on a background thread; mostly hidden behind "
        "training, see the stall column)."
    )
    if teacher_train_s is not None:
        lines.append(f"The SLM's own training took {_fmt_s(teacher_train_s)}; it is paid once and reused by every run.")
    for r in runs:
        svc = r.summary.get("service")
        if svc:
            lines.append(
                f"- {r.name}: {svc['requests']} label requests, cache hits {svc['cache_hits']}, misses "
                f"{svc['cache_misses']}, SLM forward passes {svc['slm_forward_passes']}."
            )
    return lines


def plot_curves(runs: list[RunResult], path: Path) -> None:
    """Validation log-perplexity and accuracy against step, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for r in runs:
        steps = [e[0] for e in r.evals]
        ax1.plot(steps, [e[1] for e in r.evals], marker=".", label=f"{r.name} ({r.summary['mode']})")
        ax2.plot(steps, [e[2] for e in r.evals], marker=".", label=r.name)
        kd_end = r.summary.get("phase_one_end") or 0
        if kd_end:
            ax1.axvline(kd_end, color=ax1.lines[-1].get_color(), linestyle=":", alpha=0.5)
    ax1.set_xlabel("step")
    ax1.set_ylabel("val log-perplexity (nats/token)")
    ax2.set_xlabel("step")
    ax2.set_ylabel("val next-token accuracy")
    # Leave out step 0 (a fresh model) so the interesting range is readable.
    tail = [e[1] for r in runs for e in r.evals if e[0] > 0]
    if tail:
        ax1.set_ylim(min(tail) - 0.05, min(max(tail), min(tail) + 2.0))
    ax1.legend()
    ax1.grid(alpha=0.3)
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(
    run_paths: list[str | Path], out: str | Path, *, baseline: str | None = None, teacher_run: str | Path | None = None,
    labels: list[str] | None = None,
) -> Path:
    """Write ``report.md`` and ``curves.png`` into ``out`` from the runs' saved metrics.

    Args:
        run_paths: finished run folders.
        out: folder for the report.
        baseline: name of the baseline run (default: the first run whose mode is ``baseline``).
        teacher_run: the SLM's run folder, whose training time is shown apart.
        labels: names for the runs in the table and the plots (default: their folder names).
    """
    if not run_paths:
        raise SaltError("no runs given", "pass one or more run folders")
    runs = [load_run(p) for p in run_paths]
    if labels is not None:
        if len(labels) != len(runs) or len(set(labels)) != len(labels):
            raise SaltError(f"{len(labels)} labels for {len(runs)} runs", "give one distinct label per run")
        runs = [replace(r, name=label) for r, label in zip(runs, labels, strict=True)]
    base = next((r for r in runs if r.name == baseline), None) if baseline else next(
        (r for r in runs if r.summary["mode"] == "baseline"), None)
    if baseline and base is None:
        raise SaltError(f"no run named {baseline!r} among {', '.join(r.name for r in runs)}", "pass --baseline NAME")
    teacher_s = load_run(teacher_run).summary.get("train_s") if teacher_run else None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plot_curves(runs, out / "curves.png")
    lines = ["# SALT report", "", f"Baseline: {base.name if base else 'none'}.", "",
             *report_table(runs, base, teacher_s), "", "![validation curves](curves.png)", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
