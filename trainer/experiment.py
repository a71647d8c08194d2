"""``salt experiment``: the paper's comparison from one config, over seeds.

Prepares (or reuses) the data, trains (or reuses) the SLM, starts the service, then trains every mode
for every seed with identical budgets, and writes ``results.json``, ``results.md`` and plots. Every
finished stage is reused on the next call, so an interrupted experiment continues where it stopped.
``salt demo`` is the one-seed case of the same harness.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from shared.client import SelectorClient, SelectorError
from shared.corpus import CorpusSpec
from shared.data import PackedDataset
from shared.device import PRECISIONS, resolve_device, resolve_precision
from shared.errors import SaltError
from shared.prepare import prepare
from shared.service_process import ServiceProcess
from trainer.checkpointing import CKPT_DIR
from trainer.config import MODES, RESUMABLE_CHANGES, TrainConfig
from trainer.scoring import score_pool, select
from trainer.train import SUMMARY, train

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExperimentConfig:
    """One experiment: data, SLM, LLM budget, modes and seeds. Loadable from a JSON file."""

    root: str = "runs/experiment"
    """Folder for the dataset, the SLMs, the cache and every run. Experiments that share a root share
    whatever they have in common: each SLM and LLM run's folder is named by its settings, so an
    ablation that changes only n_kd reuses the baselines and the SLM of the experiment before it."""
    name: str = ""
    """Sub-folder of ``root`` for this experiment's results (empty: ``root`` itself)."""
    source: str = "stdlib"
    """Corpus source (see ``salt prepare``)."""
    glob: str = "**/*.txt"
    max_docs: int | None = None
    seq_len: int = 128
    vocab_size: int = 8192
    slm_preset: str = "slm"
    slm_steps: int = 400
    llm_preset: str = "llm"
    llm_steps: int = 250
    batch_size: int = 16
    lr: float = 2e-3
    warmup_steps: int = 30
    """Linear warm-up of every run (capped at the run's length)."""
    eval_every: int = 25
    eval_windows: int = 512
    modes: tuple[str, ...] = ("baseline", "salt", "salt_ds", "kd_full")
    seeds: tuple[int, ...] = (0, 1, 2)
    kd_weight: float = 0.5
    kd_fraction: float = 0.2
    """Phase one as a fraction of the LLM steps (n_kd)."""
    kd_transition: str = "step"
    kd_transition_steps: int = 0
    kd_k: int = 32
    pool_windows: int = 3072
    """Train windows the SLM scores for ``salt_ds`` (a seeded random subset of the train split)."""
    selection_diversity: str = "none"
    """Diversity of the ``salt_ds`` selection: none, kmeans or dedup."""
    short_runs: tuple[str, ...] = ()
    """Extra runs on a shorter budget, as ``mode@fraction`` (e.g. ``salt@0.8``: a ``salt`` run of 80% of
    ``llm_steps`` with its own full learning-rate schedule and phase one of ``kd_fraction`` of its
    steps). Their final loss, against the full baseline's, is the "same quality in fewer steps" test
    for a user who plans the shorter run; ``baseline``, ``salt`` and ``kd_full`` can be shortened."""
    device: str = "auto"
    precision: str = "auto"
    """``auto`` (bf16 autocast where the device runs bf16 natively, fp32 elsewhere), ``fp32`` or ``bf16``;
    the SLM, every LLM run and the selector service use it, and run folders are named by what it
    resolves to."""

    def __post_init__(self) -> None:
        unknown = set(self.modes) - set(MODES)
        if unknown:
            raise SaltError(f"unknown mode(s): {', '.join(sorted(unknown))}", f"use {', '.join(MODES)}")
        if not self.modes or not self.seeds:
            raise SaltError("an experiment needs at least one mode and one seed", "set modes and seeds")
        if not 0.0 < self.kd_fraction <= 1.0:
            raise SaltError(f"kd fraction must be in (0, 1], got {self.kd_fraction}", "use e.g. 0.2")
        if self.slm_steps < 1 or self.llm_steps < 1:
            raise SaltError("slm_steps and llm_steps must be at least 1", "set positive step counts")
        if self.precision not in PRECISIONS:
            raise SaltError(f"unknown precision {self.precision!r}", "use auto, fp32 or bf16")
        self.arms  # noqa: B018 (validates short_runs)
        if self.name and (Path(self.name).name != self.name or self.name.startswith(".")):
            raise SaltError(f"experiment name {self.name!r} must be a plain folder name", "use e.g. nkd-30")

    @property
    def resolved_precision(self) -> str:
        """``fp32`` or ``bf16``: what ``precision`` means on this machine's ``device``."""
        return resolve_precision(self.precision, resolve_device(self.device))

    @property
    def n_kd(self) -> int:
        return self.kd_steps(self.llm_steps)

    @property
    def arms(self) -> list[tuple[str, str, int]]:
        """(label, mode, steps) of every run kind: the modes on the full budget, then the short runs."""
        arms = [(m, m, self.llm_steps) for m in self.modes]
        for label in self.short_runs:
            mode, _, frac = label.partition("@")
            try:
                f = float(frac)
            except ValueError:
                f = -1.0
            if mode not in ("baseline", "salt", "kd_full") or not 0.0 < f < 1.0:
                raise SaltError(f"bad short run {label!r}",
                                "use mode@fraction with mode baseline, salt or kd_full and 0 < fraction < 1")
            arms.append((label, mode, max(1, round(f * self.llm_steps))))
        return arms

    def kd_steps(self, steps: int) -> int:
        """Phase-one steps of a run of ``steps`` steps."""
        return max(1, round(self.kd_fraction * steps))

    @property
    def data_dir(self) -> Path:
        """The prepared dataset every run of the root trains on."""
        return Path(self.root) / "data"

    @property
    def out(self) -> Path:
        """Where results.json, results.md and the plots go."""
        return Path(self.root) / self.name if self.name else Path(self.root)

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> ExperimentConfig:
        """Read a JSON config (keys are this class's fields); ``overrides`` win."""
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise SaltError(f"cannot read experiment config {p}: {e}", "pass a JSON file of experiment settings") from e
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise SaltError(f"{p}: unknown setting(s) {', '.join(sorted(unknown))}", f"use: {', '.join(sorted(known))}")
        for key in ("modes", "seeds", "short_runs"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**{**data, **{k: v for k, v in overrides.items() if v is not None}})


# ---------------------------------------------------------------------------------------------- stages


def ensure_dataset(cfg: ExperimentConfig, report: Callable[[str], None]) -> PackedDataset:
    path = cfg.data_dir
    if (path / "manifest.json").is_file():
        ds = PackedDataset(path)
        if ds.seq_len == cfg.seq_len and ds.manifest["corpus"]["source"] == cfg.source:
            report(f"reusing dataset {path}")
            return ds
        raise SaltError(f"{path} holds a dataset prepared with other settings", f"delete {path} or pass another root")
    spec = CorpusSpec(source=cfg.source, glob=cfg.glob, max_docs=cfg.max_docs)
    return prepare(spec, path, seq_len=cfg.seq_len, vocab_size=cfg.vocab_size, report=report)


def _same_run(done: dict[str, Any], cfg: TrainConfig) -> bool:
    old = done.get("config") or {}
    return all(old.get(k) == v for k, v in cfg.to_dict().items() if k not in RESUMABLE_CHANGES)


def ensure_run(tcfg: TrainConfig, report: Callable[[str], None], progress: bool) -> dict[str, Any]:
    """Train unless a finished run with the same configuration exists; resume an interrupted one."""
    out = Path(tcfg.out)
    summary = out / SUMMARY
    if summary.is_file() and _same_run(json.loads(summary.read_text()), tcfg):
        report(f"reusing finished run {out}")
        return dict(json.loads(summary.read_text()))
    # Interrupted (a checkpoint, no summary): resume; finished with other settings: start again.
    resume = (out / CKPT_DIR / "trainer_state.pt").is_file() and not summary.is_file()
    report(f"{'resuming' if resume else 'training'} {tcfg.mode} {tcfg.preset} seed {tcfg.seed} in {out} "
           f"({tcfg.steps} steps)")
    return train(tcfg, resume=resume, overwrite=not resume, progress=progress)


def ensure_selection(cfg: ExperimentConfig, client: SelectorClient, ds: PackedDataset,
                     report: Callable[[str], None], progress: bool) -> str:
    """The ``salt_ds`` selection (one for every seed: the SLM's choice does not depend on the LLM's seed)."""
    budget = cfg.n_kd * cfg.batch_size
    n = min(cfg.pool_windows, len(ds.train))
    if budget > n:
        raise SaltError(f"the salt_ds budget ({budget} windows) is larger than the pool ({n})",
                        "raise pool_windows or lower the phase-one steps")
    info = client.model_info()
    wanted = {"model_fingerprint": info["fingerprint"], "count": budget, "pool": n,
              "diversity": cfg.selection_diversity, "precision": info["precision"]}
    record = Path(cfg.root) / "selections" / f"{_key(wanted)}.json"
    if record.is_file():
        saved = json.loads(record.read_text())
        if {k: saved.get(k) for k in wanted} == wanted:
            try:
                client.selection(saved["id"])
                report(f"reusing selection {saved['id']}")
                return str(saved["id"])
            except SelectorError:  # gone (a new cache database): make it again
                pass
    indices = np.sort(np.random.default_rng(0).choice(len(ds.train), size=n, replace=False))
    report(f"scoring a pool of {n} train windows with the SLM")
    job = score_pool(client, ds, name=f"pool-{n}", indices=indices.tolist(), progress=progress)
    sel = select(client, job["pool_id"], "salt_ds", count=budget, diversity=cfg.selection_diversity)
    report(f"selected {sel['count']} windows by SALT_DS score (selection {sel['id']})")
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"id": sel["id"], **wanted}) + "\n")
    return str(sel["id"])


def _key(settings: dict[str, Any]) -> str:
    """A short, stable name for a set of settings (what makes two runs the same run)."""
    blob = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.blake2b(blob.encode(), digest_size=4).hexdigest()


def _settings(tcfg: TrainConfig) -> dict[str, Any]:
    return {k: v for k, v in tcfg.to_dict().items() if k not in RESUMABLE_CHANGES}


def _common(cfg: ExperimentConfig) -> dict[str, Any]:
    """Settings every run of the experiment, SLM and LLMs, shares."""
    return {"data": str(cfg.data_dir), "batch_size": cfg.batch_size, "device": cfg.device,
            "eval_every": cfg.eval_every, "eval_windows": cfg.eval_windows, "precision": cfg.resolved_precision}


def slm_dir(cfg: ExperimentConfig) -> Path:
    """The SLM's folder: named by its preset, steps and a key of every setting that shapes it."""
    key = _key(_settings(slm_config(cfg)))
    return Path(cfg.root) / "slms" / f"{cfg.slm_preset}-{cfg.slm_steps}-{key}"


def slm_config(cfg: ExperimentConfig, out: str = "") -> TrainConfig:
    # The SLM's curve matters less than the LLMs': about 8 evaluations over its run are enough.
    return TrainConfig(**{**_common(cfg), "eval_every": max(cfg.eval_every, cfg.slm_steps // 8)}, out=out,
                       preset=cfg.slm_preset, steps=cfg.slm_steps, seed=0,
                       warmup_steps=min(cfg.warmup_steps, cfg.slm_steps))


def run_dir(cfg: ExperimentConfig, tcfg: TrainConfig, teacher: Path | None = None) -> Path:
    """An LLM run's folder: mode, seed and a key of its settings and its teacher's (runs with the same
    key are the same run, whichever experiment asks for them)."""
    settings = _settings(tcfg)
    if teacher is not None:
        settings["teacher"] = teacher.name
    return Path(cfg.root) / "runs" / f"{tcfg.mode}-seed{tcfg.seed}-{_key(settings)}"


def run_all(cfg: ExperimentConfig, *, report: Callable[[str], None] = log.info,
            progress: bool = True) -> dict[tuple[str, int], Path]:
    """Train the SLM and every (mode, seed) run; returns their folders."""
    root = Path(cfg.root)
    ds = ensure_dataset(cfg, report)
    slm = slm_dir(cfg)
    ensure_run(slm_config(cfg, str(slm)), report, progress)

    def llm(steps: int) -> dict[str, Any]:
        return {**_common(cfg), "preset": cfg.llm_preset, "steps": steps, "lr": cfg.lr,
                "warmup_steps": min(cfg.warmup_steps, steps)}

    kd = {"kd_weight": cfg.kd_weight, "kd_transition": cfg.kd_transition, "kd_k": cfg.kd_k,
          "kd_transition_steps": cfg.kd_transition_steps}
    runs: dict[tuple[str, int], Path] = {}
    for seed in cfg.seeds:
        for label, mode, steps in cfg.arms:
            if mode == "baseline":
                tcfg = TrainConfig(out="", mode="baseline", seed=seed, **llm(steps))
                out = run_dir(cfg, tcfg)
                ensure_run(replace(tcfg, out=str(out)), report, progress)
                runs[(label, seed)] = out
    kd_arms = [arm for arm in cfg.arms if arm[1] != "baseline"]
    if not kd_arms:
        return runs
    db = f"sqlite:///{(root / 'cache.sqlite').resolve()}"
    service_env = {"SALT_DEVICE": cfg.device, "SALT_PRECISION": cfg.resolved_precision}
    with ServiceProcess(slm / CKPT_DIR, db, env=service_env) as svc:
        report(f"selector service on {svc.url} (cache {root / 'cache.sqlite'})")
        selection = None
        if "salt_ds" in cfg.modes:
            with SelectorClient(svc.url) as client:
                selection = ensure_selection(cfg, client, ds, report, progress)
        for seed in cfg.seeds:
            for label, mode, steps in kd_arms:
                extra: dict[str, Any] = {"n_kd": cfg.kd_steps(steps)} if mode != "kd_full" else {}
                if mode == "salt_ds":
                    extra["selection"] = selection
                tcfg = TrainConfig(out="", mode=mode, seed=seed, service_url=svc.url, **llm(steps), **kd, **extra)
                out = run_dir(cfg, tcfg, teacher=slm)
                ensure_run(replace(tcfg, out=str(out)), report, progress)
                runs[(label, seed)] = out
    return runs


# --------------------------------------------------------------------------------------------- results


def _evals(run: Path) -> list[tuple[int, float, float]]:
    from trainer.train import read_metrics

    return sorted((r["step"], r["val_loss"], r["val_acc"]) for r in read_metrics(run) if r["kind"] == "eval")


def _at_or_before(evals: list[tuple[int, float, float]], step: int) -> tuple[int, float, float]:
    return [e for e in evals if e[0] <= step][-1]


def collect(cfg: ExperimentConfig, runs: dict[tuple[str, int], Path]) -> dict[str, Any]:
    """Per-run and per-mode numbers, read from the runs' metrics and summaries only."""
    rows = []
    at70 = int(0.7 * cfg.llm_steps)
    for (mode, seed), path in sorted(runs.items()):
        evals = _evals(path)
        summary = json.loads((path / SUMMARY).read_text())
        base = runs.get(("baseline", seed))
        target = _evals(base)[-1][1] if base is not None else None
        reach = next((s for s, v, _ in evals if target is not None and v <= target), None)
        svc = summary.get("service") or {}
        rows.append({
            "mode": mode, "seed": seed, "run": str(path), "steps": summary["steps"],
            "final_loss": evals[-1][1], "final_acc": evals[-1][2],
            "step_70": _at_or_before(evals, at70)[0], "loss_70": _at_or_before(evals, at70)[1],
            "acc_70": _at_or_before(evals, at70)[2],
            "reach_step": reach, "reach_fraction": reach / cfg.llm_steps if reach is not None else None,
            "llm_s": summary.get("train_s", 0.0) - summary.get("data_wait_s", 0.0),
            "teacher_s": summary.get("teacher_s", 0.0), "stall": summary.get("data_stall_fraction", 0.0),
            "cache_hits": svc.get("cache_hits"), "slm_forwards": svc.get("slm_forward_passes"),
            "fallback_batches": summary.get("fallback_batches", 0),
        })
    modes: dict[str, Any] = {}
    for mode, kind, steps in cfg.arms:
        mine = [r for r in rows if r["mode"] == mode]
        if not mine:
            continue
        agg: dict[str, Any] = {"n": len(mine), "mode": kind, "steps": steps}
        for key in ("final_loss", "final_acc", "loss_70", "acc_70", "llm_s", "teacher_s"):
            vals = np.array([r[key] for r in mine], dtype=float)
            agg[key] = {"mean": float(vals.mean()), "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0}
        reached = [r["reach_fraction"] for r in mine if r["reach_fraction"] is not None]
        agg["reached"] = len(reached)
        agg["reach_fraction_mean"] = float(np.mean(reached)) if reached else None
        modes[mode] = agg
    slm_run = slm_dir(cfg)
    slm = json.loads((slm_run / SUMMARY).read_text())
    return {"config": asdict(cfg),
            "slm": {"run": str(slm_run), "val_loss": slm["val_loss"], "train_s": slm.get("train_s")},
            "runs": rows, "modes": modes}


def _pm(a: dict[str, Any], key: str, fmt: str) -> str:
    """Mean ± std over seeds; the value alone for one seed (a spread of one run is not zero, it is unknown)."""
    m = a[key]
    return format(m["mean"], fmt) if a["n"] == 1 else f"{format(m['mean'], fmt)} ± {format(m['std'], fmt)}"


def results_markdown(results: dict[str, Any]) -> str:
    cfg = results["config"]
    lines = [
        "# Results", "",
        f"LLM `{cfg['llm_preset']}` for {cfg['llm_steps']} steps of {cfg['batch_size']} windows; SLM "
        f"`{cfg['slm_preset']}` ({cfg['slm_steps']} steps, val log-ppl {results['slm']['val_loss']:.4f}); "
        f"phase one {cfg['kd_fraction']:.0%} of the steps, w = {cfg['kd_weight']}, k = {cfg['kd_k']}, "
        f"transition {cfg['kd_transition']}; seeds {', '.join(map(str, cfg['seeds']))}. Mean ± std over seeds.", "",
        "| mode | steps | final val log-ppl | final val acc | val log-ppl at 70% | val acc at 70% | reached "
        "baseline final (runs) | at % of the baseline's steps (mean) | LLM time | teacher time |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mode, a in results["modes"].items():
        reach = f"{a['reach_fraction_mean']:.0%}" if a["reach_fraction_mean"] is not None else "—"
        lines.append(
            f"| {mode} | {a.get('steps', cfg['llm_steps'])} | {_pm(a, 'final_loss', '.4f')} | "
            f"{_pm(a, 'final_acc', '.2%')} | {_pm(a, 'loss_70', '.4f')} | "
            f"{_pm(a, 'acc_70', '.2%')} | {a['reached']}/{a['n']} | {reach} | {_pm(a, 'llm_s', '.0f')} s | "
            f"{_pm(a, 'teacher_s', '.0f')} s |"
        )
    lines += ["", f"The SLM's training ({results['slm']['train_s']:.0f} s) is paid once and reused by every run; "
              "teacher time is the service's time answering phase-one label requests (a background thread).", "",
              "![validation log-perplexity](val_loss.png)", "", "![validation accuracy](val_acc.png)", ""]
    return "\n".join(lines)


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


def ablation_markdown(all_results: list[dict[str, Any]]) -> str:
    """One table over several experiments (an ablation): every mode of every experiment, with its
    settings, its change against the baseline of the same experiment, and where it reached that
    baseline's final loss."""
    lines = [
        "| experiment | SLM (steps, val log-ppl) | n_kd | w | transition | mode | steps | seeds | final val log-ppl | "
        "vs baseline | final val acc | reached baseline final (runs) | at % of the baseline's steps (mean) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for res in all_results:
        cfg, modes = res["config"], res["modes"]
        base = modes.get("baseline", {}).get("final_loss", {}).get("mean")
        name = cfg.get("name") or Path(cfg["root"]).name
        slm = f"{cfg['slm_preset']} ({cfg['slm_steps']}, {res['slm']['val_loss']:.3f})"
        transition = cfg["kd_transition"]
        if transition != "step":
            transition += f" +{cfg['kd_transition_steps']}"
        for mode, a in modes.items():
            kind = a.get("mode", mode)
            phase = "—" if kind == "baseline" else ("all" if kind == "kd_full" else f"{cfg['kd_fraction']:.0%}")
            delta = "—" if base is None or mode == "baseline" else f"{a['final_loss']['mean'] - base:+.4f}"
            reach = f"{a['reach_fraction_mean']:.0%}" if a["reach_fraction_mean"] is not None else "never"
            lines.append(
                f"| {name} | {slm} | {phase} | {'—' if kind == 'baseline' else cfg['kd_weight']} | "
                f"{'—' if kind in ('baseline', 'kd_full') else transition} | {mode} | "
                f"{a.get('steps', cfg['llm_steps'])} | {a['n']} | "
                f"{_pm(a, 'final_loss', '.4f')} | {delta} | {_pm(a, 'final_acc', '.2%')} | "
                f"{a['reached']}/{a['n']} | {reach} |"
            )
    return "\n".join(lines) + "\n"


def plot_results(results: dict[str, Any], out: Path) -> None:
    """Mean ± std bands per mode: validation log-perplexity and accuracy against step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for idx, label, name in ((1, "val log-perplexity (nats/token)", "val_loss.png"),
                             (2, "val next-token accuracy", "val_acc.png")):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for mode in results["modes"]:
            curves = [_evals(Path(r["run"])) for r in results["runs"] if r["mode"] == mode]
            steps = [e[0] for e in curves[0] if e[0] > 0]
            vals = np.array([[e[idx] for e in c if e[0] > 0][: len(steps)] for c in curves])
            mean, std = vals.mean(0), vals.std(0)
            ax.plot(steps, mean, label=mode)
            ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / name, dpi=120)
        plt.close(fig)


def run_experiment(cfg: ExperimentConfig, *, report: Callable[[str], None] = log.info,
                   progress: bool = True) -> dict[str, Any]:
    """Run (or reuse) every stage and write ``results.json``, ``results.md`` and the plots into ``root``."""
    runs = run_all(cfg, report=report, progress=progress)
    results = collect(cfg, runs)
    root = cfg.out
    root.mkdir(parents=True, exist_ok=True)
    (root / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    plot_results(results, root)
    (root / "results.md").write_text(results_markdown(results))
    report(f"results: {root / 'results.md'}")
    return results


PRESETS: dict[str, ExperimentConfig] = {
    # Phase one of 40% and a k-means-diverse SALT_DS selection (see docs/results/cpu-small/ablations/);
    # a baseline on 80% of the steps shows what cutting the budget costs without a teacher.
    "cpu-small": ExperimentConfig(root="runs/cpu-small", kd_fraction=0.4, selection_diversity="kmeans",
                                  short_runs=("baseline@0.8",)),
    "gpu-mid": ExperimentConfig(
        root="runs/gpu-mid", slm_preset="slm-mid", llm_preset="llm-mid", slm_steps=3000, llm_steps=3000,
        batch_size=64, seq_len=256, vocab_size=16384, eval_every=250, pool_windows=65536, seeds=(0,), lr=1e-3,
    ),
}


def preset(name: str, **overrides: Any) -> ExperimentConfig:
    if name not in PRESETS:
        raise SaltError(f"unknown experiment preset {name!r}", f"use one of {', '.join(PRESETS)} or --config FILE")
    return replace(PRESETS[name], **{k: v for k, v in overrides.items() if v is not None})
