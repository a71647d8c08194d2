"""An experiment's results as Markdown: the per-mode table, the per-run table (reach and wall-clock to the
baseline's final loss), and one table over several experiments (an ablation)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainer.config import ModelConfig
from trainer.experiments.measures import reach_label


def _model(cfg: dict[str, Any], which: str) -> str:
    """The SLM's or LLM's model in a results config: its Hugging Face model's name, or its preset."""
    return ModelConfig(preset=cfg[f"{which}_preset"], model=cfg.get(f"{which}_model")).name


def _pm(m: dict[str, float] | None, n: int, fmt: str, unit: str = "") -> str:
    """Mean ± std over ``n`` seeds; the value alone for one seed (a spread of one run is not zero, it is
    unknown); ``—`` when missing."""
    if m is None:
        return "—"
    return f"{format(m['mean'], fmt)}{unit}" if n == 1 else f"{format(m['mean'], fmt)} ± {format(m['std'], fmt)}{unit}"


def _labels(cfg: dict[str, Any]) -> str:
    """The teacher labels of an experiment's KD runs, as its results say them."""
    if cfg.get("kd_labels", "topk") == "sample":
        return f"sampled labels of {cfg['kd_draws']} draws"
    return f"k = {cfg['kd_k']}"


def _kd_ends(steps: list[int | None]) -> str:
    known = [s for s in steps if s is not None]
    if not known:
        return "—"
    lo, hi = min(known), max(known)
    return str(lo) if lo == hi else f"{lo}–{hi}"


def _reach(a: dict[str, Any]) -> str:
    """Mean reach over the runs that reached, and the worst run's (``never`` when one did not reach)."""
    if a.get("reach_fraction_mean") is None:
        return "never"
    mean = reach_label(a["reach_fraction_mean"])
    worst = reach_label(a["reach_fraction_worst"]) if "reach_fraction_worst" in a else mean
    return mean if worst == mean else f"{mean} (worst {worst})"


def _ratio(a: dict[str, Any]) -> str:
    m = a.get("time_ratio")
    if m is None:
        return "—"
    worst = a.get("time_ratio_worst")
    mean = f"{m['mean']:.2f}"
    if worst is None:
        return f"{mean} (worst: never)"
    return mean if f"{worst:.2f}" == mean else f"{mean} (worst {worst:.2f})"


def mode_table(results: dict[str, Any]) -> list[str]:
    """One row per mode: mean ± std over its seeds."""
    lines = [
        "| mode | steps | final val log-ppl | final val acc | val log-ppl at 70% | val acc at 70% | KD end step | "
        "reached baseline final (runs) | with a saving (runs) | at % of the baseline's steps | LLM time | "
        "teacher time | wall-clock to baseline final | ÷ baseline's |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mode, a in results["modes"].items():
        n = a["n"]
        lines.append(
            f"| {mode} | {a['steps']} | {_pm(a['final_loss'], n, '.4f')} | {_pm(a['final_acc'], n, '.2%')} | "
            f"{_pm(a['loss_70'], n, '.4f')} | {_pm(a['acc_70'], n, '.2%')} | {_kd_ends(a['kd_end_steps'])} | "
            f"{a['reached']}/{n} | {a['saved']}/{n} | {_reach(a)} | {_pm(a['llm_s'], n, '.0f', ' s')} | "
            f"{_pm(a['teacher_s'], n, '.0f', ' s')} | {_pm(a['time_to_reach_s'], a['reached'], '.0f', ' s')} | "
            f"{_ratio(a)} |"
        )
    return lines


def run_table(results: dict[str, Any]) -> list[str]:
    """One row per run: where it reaches its seed's baseline final loss and the wall-clock to there."""
    lines = [
        "| mode | seed | final val log-ppl | KD end step | reaches baseline final at step | % of the baseline's "
        "steps | LLM time to there | teacher time to there | SLM share | wall-clock to there | ÷ baseline's |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    order = list(results["modes"])
    for r in sorted(results["runs"], key=lambda r: (order.index(r["mode"]) if r["mode"] in order else len(order),
                                                    r["seed"])):
        t = r["time_to_reach"]
        kd = "—" if r["kd_end_step"] is None else f"{r['kd_end_step']}" + (" (n_kd)" if r["kd_end_from"] == "config"
                                                                            else "")
        cells = [f"{t[k]:.0f} s" for k in ("llm_s", "teacher_s", "slm_share_s", "total_s")] if t else ["—"] * 4
        lines.append(
            f"| {r['mode']} | {r['seed']} | {r['final_loss']:.4f} | {kd} | "
            f"{'never' if r['reach_step'] is None else format(r['reach_step'], '.1f')} | "
            f"{reach_label(r['reach_fraction'])} | {' | '.join(cells)} | "
            f"{'—' if r['time_ratio'] is None else format(r['time_ratio'], '.2f')} |"
        )
    return lines


def _nats(v: float | None) -> str:
    return "—" if v is None else f"{v:+.4f}"


def lead_table(results: dict[str, Any]) -> list[str]:
    """One row per KD run: its lead over its seed's baseline (baseline loss − run loss) where phase one
    ended, at 80% of the steps and at the end, beside the lead at 80% a reach by then needs."""
    lines = [
        "| mode | seed | KD end step | lead at KD end | lead at 80% | needed at 80% (the baseline's fall over its "
        "last 20%) | lead at the end |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results["runs"]:
        lead = r.get("lead")
        if not lead:
            continue
        kd = "—" if r["kd_end_step"] is None else str(r["kd_end_step"])
        lines.append(f"| {r['mode']} | {r['seed']} | {kd} | {_nats(lead['kd_end'])} | {_nats(lead['at_80'])} | "
                     f"{_nats(lead['needed_80'])} | {_nats(lead['end'])} |")
    return lines if len(lines) > 2 else []


def _lead_cell(a: dict[str, Any]) -> str:
    have, need = a.get("lead_at_80"), a.get("lead_needed_80")
    return "—" if not have or not need else f"{have['mean']:+.3f} / {need['mean']:.3f}"


def results_markdown(results: dict[str, Any]) -> str:
    cfg, slm = results["config"], results["slm"]
    share = f"{slm['share_s']:.0f} s" if slm.get("train_s") is not None else "unknown"
    lines = [
        "# Results", "",
        f"LLM `{_model(cfg, 'llm')}` for {cfg['llm_steps']} steps of {cfg['batch_size']} windows; SLM "
        f"`{_model(cfg, 'slm')}` ({cfg['slm_steps']} steps, val log-ppl {slm['val_loss']:.4f}); "
        f"phase one {cfg['kd_fraction']:.0%} of the steps, w = {cfg['kd_weight']}, {_labels(cfg)}, "
        f"transition {cfg['kd_transition']}; seeds {', '.join(map(str, cfg['seeds']))}. Mean ± std over seeds.", "",
        *mode_table(results), "",
        "Reach: the step from which the run's validation loss stays at or below its seed's baseline final loss, "
        "interpolated between evaluations; a run there only at its last evaluation has no saving, one that ends "
        "above it never reaches it. The 70% columns are read at exactly 70% of the baseline's steps, "
        "interpolated. Wall-clock to the baseline's final loss: the LLM's own time up to the reach step, the "
        "teacher's time up to there (pro-rated over the steps that asked it: live SLM passes on cache misses, "
        "cache reads on hits), and the run's share of the SLM's training; the baseline's is its own time to its "
        "final loss. Reach and wall-clock are means over the runs that reached it.", "",
        *run_table(results), "",
        *_with_heading(lead_table(results), "What must survive: the lead (baseline loss − run loss, same seed) where "
                       "phase one ended, at 80% of the steps and at the end. Reaching the baseline's final loss by "
                       "80% of the steps takes a lead at 80% at least the baseline's own fall over its last 20%."),
        f"The SLM's training ({'unknown' if slm.get('train_s') is None else format(slm['train_s'], '.0f') + ' s'}) "
        f"is shared over the {slm.get('kd_runs', 0)} KD runs that use it ({share} each); teacher time is the "
        "service's time answering phase-one label requests (a background thread, counted in full).", "",
        "![validation log-perplexity](val_loss.png)", "", "![validation accuracy](val_acc.png)", "",
    ]
    return "\n".join(lines)


def _with_heading(table: list[str], text: str) -> list[str]:
    return [text, "", *table, ""] if table else []


def ablation_markdown(all_results: list[dict[str, Any]]) -> str:
    """One table over several experiments (an ablation): every mode of every experiment, with its
    settings, its change against the baseline of the same experiment, where it reached that baseline's
    final loss and its wall-clock there against the baseline's (``—`` for results without it)."""
    lines = [
        "| experiment | SLM (steps, val log-ppl) | n_kd | w | transition | mode | steps | seeds | final val log-ppl | "
        "vs baseline | final val acc | reached baseline final (runs) | at % of the baseline's steps | "
        "wall-clock ÷ baseline's | lead at 80% / needed (mean) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for res in all_results:
        cfg, modes = res["config"], res["modes"]
        base = modes.get("baseline", {}).get("final_loss", {}).get("mean")
        name = cfg.get("name") or Path(cfg["root"]).name
        slm = f"{_model(cfg, 'slm')} ({cfg['slm_steps']}, {res['slm']['val_loss']:.3f})"
        transition = cfg["kd_transition"]
        if transition != "step":
            transition += f" +{cfg['kd_transition_steps']}"
        for mode, a in modes.items():
            kind = a.get("mode", mode)
            phase = "—" if kind == "baseline" else ("all" if kind == "kd_full" else f"{cfg['kd_fraction']:.0%}")
            delta = "—" if base is None or mode == "baseline" else f"{a['final_loss']['mean'] - base:+.4f}"
            lines.append(
                f"| {name} | {slm} | {phase} | {'—' if kind == 'baseline' else cfg['kd_weight']} | "
                f"{'—' if kind in ('baseline', 'kd_full') else transition} | {mode} | "
                f"{a.get('steps', cfg['llm_steps'])} | {a['n']} | "
                f"{_pm(a['final_loss'], a['n'], '.4f')} | {delta} | {_pm(a['final_acc'], a['n'], '.2%')} | "
                f"{a['reached']}/{a['n']} | {_reach(a)} | {_ratio(a)} | {_lead_cell(a)} |"
            )
    return "\n".join(lines) + "\n"
