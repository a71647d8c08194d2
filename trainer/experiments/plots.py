"""Plots of an experiment: mean ± std bands per mode over the seeds, from the runs' curves (``curves.json``),
with each mode's KD end step as a dotted vertical line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def plot_results(results: dict[str, Any], curves: list[dict[str, Any]], out: Path) -> None:
    """Mean ± std bands per mode: validation log-perplexity and accuracy against step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for idx, label, name in ((1, "val log-perplexity (nats/token)", "val_loss.png"),
                             (2, "val next-token accuracy", "val_acc.png")):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for mode in results["modes"]:
            mine = [c for c in curves if c["mode"] == mode]
            steps = [e[0] for e in mine[0]["evals"] if e[0] > 0]
            vals = np.array([[e[idx] for e in c["evals"] if e[0] > 0][: len(steps)] for c in mine])
            mean, std = vals.mean(0), vals.std(0)
            line = ax.plot(steps, mean, label=mode)[0]
            ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
            ends = [c["kd_end_step"] for c in mine if c["kd_end_step"] is not None and c["kd_end_step"] < c["steps"]]
            for end in sorted(set(ends)):
                ax.axvline(end, color=line.get_color(), linestyle=":", alpha=0.6)
        ax.set_xlabel("step (dotted: end of phase one)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / name, dpi=120)
        plt.close(fig)
