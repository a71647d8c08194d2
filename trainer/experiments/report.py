"""Run reports: a table in the paper's shape, and validation curves, rebuilt from saved metrics only.

``salt report RUN...`` (and ``salt demo``) write ``report.md`` and ``curves.png``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from shared.errors import SaltError
from trainer.experiments.curves import run_curve
from trainer.experiments.measures import reach_label, reach_step, time_to
from trainer.recipe.metrics import EvalPoint, eval_curve, read_summary


@dataclass
class RunResult:
    name: str
    summary: dict[str, Any]
    evals: list[EvalPoint]
    """(step, val_loss, val_acc) in step order."""
    curve: dict[str, Any]
    """The run's entry of ``curves.json``: its evaluations with the LLM's time, KD end step and timings."""

    @property
    def final_loss(self) -> float:
        return self.evals[-1][1]

    @property
    def final_acc(self) -> float:
        return self.evals[-1][2]

    def reach(self, loss: float) -> float | None:
        """The step from which the validation loss stays at or below ``loss`` (``measures.reach_step``)."""
        return reach_step([(s, v) for s, v, _ in self.evals], loss)

    def time_to(self, step: float, slm_share_s: float) -> dict[str, float]:
        """Wall-clock to ``step``: LLM, teacher, the SLM's share and their total (``measures.time_to``)."""
        c = self.curve
        share = slm_share_s if c["kind"] != "baseline" else 0.0
        return time_to(step, [(e[0], e[3]) for e in c["evals"]], c["teacher_s"], c["teacher_steps"], share)


def load_run(path: str | Path) -> RunResult:
    """A run folder's metrics and summary (refused if the run has not finished)."""
    p = Path(path)
    evals = eval_curve(p)
    summary = read_summary(p)
    if summary is None or not evals:
        raise SaltError(f"{p} is not a finished run (no summary.json or no evaluation)", "finish or resume it")
    return RunResult(p.name, summary, evals, run_curve(p.name, int(summary.get("seed", 0)), p))


def _fmt_s(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds:,.0f} s"


def _reach_cells(r: RunResult, baseline: RunResult | None, slm_share_s: float) -> list[str]:
    """Reach step, % of the baseline's steps, wall-clock to there and its ratio to the baseline's."""
    if baseline is None:
        return ["—"] * 4
    target, budget = baseline.final_loss, baseline.summary["steps"]
    reach, own = r.reach(target), baseline.reach(target)
    if reach is None:
        return ["never", "never", "—", "—"]
    total = r.time_to(reach, slm_share_s)["total_s"]
    base_total = baseline.time_to(own, 0.0)["total_s"] if own is not None else None
    ratio = f"{total / base_total:.2f}" if base_total else "—"
    return [f"{reach:.1f}", reach_label(reach / budget), _fmt_s(total), ratio]


def report_table(runs: list[RunResult], baseline: RunResult | None, teacher_train_s: float | None) -> list[str]:
    """Markdown lines: final numbers, where each run reaches the baseline's final loss, wall-clock to there."""
    lines = [
        "| run | mode | steps | final val log-ppl | final val acc | KD end step | reaches baseline final at step | "
        "% of steps | wall-clock to there | ÷ baseline's | LLM time | teacher time (labels) | phase-one stall | "
        "fallback batches |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    kd_runs = sum(r.summary["mode"] != "baseline" for r in runs)
    share = (teacher_train_s or 0.0) / kd_runs if kd_runs else 0.0
    for r in runs:
        s = r.summary
        kd_end = r.curve["kd_end_step"]
        lines.append(
            f"| {r.name} | {s['mode']} | {s['steps']} | {r.final_loss:.4f} | {r.final_acc:.2%} | "
            f"{'—' if kd_end is None else kd_end} | {' | '.join(_reach_cells(r, baseline, share))} | "
            f"{_fmt_s(r.curve['llm_s'])} | {_fmt_s(s.get('teacher_s'))} | {s.get('data_stall_fraction', 0.0):.1%} | "
            f"{s.get('fallback_batches', 0)} |"
        )
    lines += [
        "",
        "Reach: the step from which the run's validation loss stays at or below the baseline's final loss, "
        "interpolated between evaluations (a run there only at its last evaluation: no saving). Wall-clock to "
        "there: the LLM's own time up to that step, the teacher's time up to it (pro-rated over the steps that "
        "asked it) and, for the KD runs, an even share of the SLM's training; the baseline's: its own time to "
        "its final loss. LLM time: the run's step time less the time it waited for data. Teacher time: the "
        "time the service took to answer phase-one label requests (on a background thread; mostly hidden "
        "behind training, see the stall column).",
    ]
    if teacher_train_s is not None:
        lines.append(f"The SLM's own training took {_fmt_s(teacher_train_s)}; it is paid once and shared by "
                     f"the {kd_runs} KD runs here ({_fmt_s(share)} each).")
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
        kd_end = r.curve["kd_end_step"]
        if kd_end is not None and kd_end < r.summary["steps"]:
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
