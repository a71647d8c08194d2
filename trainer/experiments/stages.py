"""The stages of an experiment: the dataset, the SLM (and reference SLMs), the selections and every (mode, seed)
LLM run.

Every finished stage is reused on the next call, so an interrupted experiment continues where it
stopped; run folders are named by a key of their settings, so experiments that share a root share
every run they have in common.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared.client import SelectorClient
from shared.data import PackedDataset
from shared.errors import SaltError
from shared.prepare import prepare
from trainer.config import TrainConfig
from trainer.experiments.config import PAIR_MODES, ExperimentConfig
from trainer.experiments.selections import ensure_pair_selection, ensure_selection
from trainer.experiments.selections import settings_key as _key
from trainer.recipe import train
from trainer.recipe.checkpointing import CKPT_DIR, STATE
from trainer.recipe.metrics import read_summary
from trainer.service_process import ServiceProcess

log = logging.getLogger(__name__)

def ensure_dataset(cfg: ExperimentConfig, report: Callable[[str], None]) -> PackedDataset:
    """The experiment's dataset: prepared once into ``root/data``, then reused."""
    path = cfg.data_dir
    if (path / "manifest.json").is_file():
        ds = PackedDataset(path)
        if ds.seq_len == cfg.data.seq_len and ds.manifest["corpus"]["source"] == cfg.data.corpus.source and \
                ds.manifest.get("holdout_fraction", 0.0) == cfg.data.holdout_fraction:
            report(f"reusing dataset {path}")
            return ds
        raise SaltError(f"{path} holds a dataset prepared with other settings", f"delete {path} or pass another root")
    return prepare(cfg.data, path, report=report)


def ensure_run(tcfg: TrainConfig, report: Callable[[str], None], progress: bool) -> dict[str, Any]:
    """Train unless a finished run with the same configuration exists; resume an interrupted one."""
    out = Path(tcfg.out)
    done = read_summary(out)
    if done is not None and TrainConfig.from_dict(done.get("config") or {}).trajectory() == tcfg.trajectory():
        report(f"reusing finished run {out}")
        return done
    # Interrupted (a checkpoint, no summary): resume; finished with other settings: start again.
    resume = (out / CKPT_DIR / STATE).is_file() and done is None
    report(f"{'resuming' if resume else 'training'} {tcfg.mode} {tcfg.arch.name} seed {tcfg.seed} in {out} "
           f"({tcfg.steps} steps)")
    return train(tcfg, resume=resume, overwrite=not resume, progress=progress)


def _run_config(cfg: ExperimentConfig, **settings: Any) -> TrainConfig:
    """A run of the experiment: its data, device, precision, batch and evaluation, then ``settings``, with
    the warm-up capped at the run's length."""
    merged = {"data": str(cfg.data_dir), "out": "", "device": cfg.device, "precision": cfg.resolved_precision,
              "batch_size": cfg.optim.batch_size, **cfg.eval.to_dict(), **settings}
    merged["warmup_steps"] = min(cfg.optim.warmup_steps, merged["steps"])
    return TrainConfig.of(**merged)


def slm_config(cfg: ExperimentConfig, out: str = "", steps: int | None = None) -> TrainConfig:
    """The SLM's run (of ``steps``, default ``slm_steps``): the experiment's batch and data with the default
    optimiser settings."""
    steps = steps or cfg.slm_steps
    # The SLM's curve matters less than the LLMs': about 8 evaluations over its run are enough.
    return _run_config(cfg, preset=cfg.slm_preset, model=cfg.slm_model, steps=steps, out=out,
                       eval_every=max(cfg.eval.eval_every, steps // 8))


def llm_config(cfg: ExperimentConfig, mode: str, seed: int, steps: int, **settings: Any) -> TrainConfig:
    """An LLM run of ``mode``: the experiment's optimiser (and KD settings, for the KD modes)."""
    kd = cfg.kd.to_dict() if mode != "baseline" else {}
    return _run_config(cfg, **{**cfg.optim.to_dict(), **kd, "preset": cfg.llm_preset, "model": cfg.llm_model,
                               "steps": steps,
                               "mode": mode, "seed": seed, **settings})


def slm_dir(cfg: ExperimentConfig) -> Path:
    """The SLM's folder: named by its preset, steps and a key of every setting that shapes it."""
    scfg = slm_config(cfg)
    return Path(cfg.root) / "slms" / f"{scfg.arch.name}-{cfg.slm_steps}-{_key(scfg.distinct())}"


def reference_config(cfg: ExperimentConfig, mode: str, out: str = "") -> TrainConfig:
    """The reference SLM of a two-model mode: ``rho``'s is the SLM's run on the dataset's holdout (documents
    no LLM run reads), ``difference``'s the SLM's run for ``reference_steps``."""
    if mode == "rho":
        return slm_config(cfg, out).with_(data=str(PackedDataset(cfg.data_dir).holdout_path()))
    return slm_config(cfg, out, steps=cfg.reference_steps)


def reference_dir(cfg: ExperimentConfig, mode: str) -> Path:
    """The reference SLM's folder, named as the SLM's (the holdout one marked: its data is not in the key)."""
    scfg = reference_config(cfg, mode) if mode != "rho" else slm_config(cfg)
    data = "-holdout" if mode == "rho" else ""
    return Path(cfg.root) / "slms" / f"{scfg.arch.name}-{scfg.steps}{data}-{_key(scfg.distinct())}"


def run_dir(cfg: ExperimentConfig, tcfg: TrainConfig, teacher: Path | None = None, label: str | None = None) -> Path:
    """An LLM run's folder: its label (default: its mode), seed and a key of its settings and its teacher's
    (runs with the same key are the same run, whichever experiment asks for them)."""
    settings = tcfg.distinct()
    if teacher is not None:
        settings["teacher"] = teacher.name
    return Path(cfg.root) / "runs" / f"{label or tcfg.mode}-seed{tcfg.seed}-{_key(settings)}"


def _ensure_in_place(cfg: ExperimentConfig, tcfg: TrainConfig, report: Callable[[str], None], progress: bool,
                     teacher: Path | None = None, label: str | None = None) -> Path:
    out = run_dir(cfg, tcfg, teacher, label)
    ensure_run(tcfg.with_(out=str(out)), report, progress)
    return out


def run_all(cfg: ExperimentConfig, *, report: Callable[[str], None] = log.info,
            progress: bool = True) -> dict[tuple[str, int], Path]:
    """Train the SLM (and the reference SLMs of the two-model modes) and every (mode, seed) run; returns
    the runs' folders."""
    root = Path(cfg.root)
    ds = ensure_dataset(cfg, report)
    slm = slm_dir(cfg)
    ensure_run(slm_config(cfg, str(slm)), report, progress)
    references = {m: reference_dir(cfg, m) for m in cfg.modes if m in PAIR_MODES}
    for mode, ref in references.items():
        ensure_run(reference_config(cfg, mode, str(ref)), report, progress)
    runs: dict[tuple[str, int], Path] = {}
    for seed in cfg.seeds:
        for label, mode, steps in cfg.arms:
            if mode == "baseline":
                runs[(label, seed)] = _ensure_in_place(cfg, llm_config(cfg, mode, seed, steps), report, progress)
    kd_arms = [arm for arm in cfg.arms if arm[1] != "baseline"]
    if not kd_arms:
        return runs
    db = f"sqlite:///{(root / 'cache.sqlite').resolve()}"
    # Scoring jobs store labels at the service's default k: the runs' k, so phase one on a selection finds
    # every label of its windows in the cache.
    service_env = {"SALT_DEVICE": cfg.device, "SALT_PRECISION": cfg.resolved_precision,
                   "SALT_DEFAULT_K": str(cfg.kd.kd_k)}
    with ServiceProcess(slm / CKPT_DIR, db, env=service_env) as svc:
        report(f"selector service on {svc.url} (cache {root / 'cache.sqlite'})")
        selections: dict[str, str] = {}
        with SelectorClient(svc.url) as client:
            if "salt_ds" in cfg.modes:
                selections["salt_ds"] = ensure_selection(cfg, client, ds, report, progress)
            for mode, ref in references.items():
                selections[mode] = ensure_pair_selection(cfg, mode, client, ds, reference=ref, db=db,
                                                         service_env=service_env, report=report, progress=progress)
        for seed in cfg.seeds:
            for label, mode, steps in kd_arms:
                # A two-model mode trains as salt_ds (KD from the SLM) on its own selection.
                kind = "salt_ds" if mode in PAIR_MODES else mode
                extra: dict[str, Any] = {"n_kd": cfg.kd_steps(steps)} if kind != "kd_full" else {}
                if kind == "salt_ds":
                    extra["selection"] = selections[mode]
                tcfg = llm_config(cfg, kind, seed, steps, service_url=svc.url, **extra)
                runs[(label, seed)] = _ensure_in_place(cfg, tcfg, report, progress, teacher=slm,
                                                       label=mode if mode in PAIR_MODES else None)
    return runs
