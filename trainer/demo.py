"""``salt demo``: SALT end to end on the default corpus, on a laptop CPU.

1. prepare the built-in corpus (or reuse it);
2. train the SLM (or reuse it);
3. start the selector service as a child process (SQLite cache in the demo folder);
4. train the ``baseline``, ``salt`` and ``salt_ds`` LLMs with the same step budget (``salt_ds`` after
   scoring a pool of train windows and selecting the phase-one windows with the SLM);
5. write ``report.md`` and ``curves.png``.

Every stage whose output is complete and made with the same settings is reused on the next call.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shared.client import SelectorClient, SelectorError
from shared.corpus import CorpusSpec
from shared.data import PackedDataset
from shared.errors import SaltError
from shared.prepare import prepare
from shared.service_process import ServiceProcess
from trainer.checkpointing import CKPT_DIR
from trainer.config import RESUMABLE_CHANGES, TrainConfig
from trainer.report import write_report
from trainer.scoring import score_pool, select
from trainer.train import SUMMARY, train

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo; the defaults finish within about 15 minutes on a 2-core CPU."""

    root: str = "runs/demo"
    """Folder for the dataset, the SLM, the cache, the LLM runs and the report."""
    source: str = "stdlib"
    """Corpus source (see ``salt prepare``)."""
    seq_len: int = 128
    vocab_size: int = 8192
    slm_preset: str = "slm"
    slm_steps: int = 400
    llm_preset: str = "llm"
    llm_steps: int = 250
    batch_size: int = 16
    kd_weight: float = 0.5
    kd_fraction: float = 0.2
    """Phase one as a fraction of the LLM steps (n_kd)."""
    pool_windows: int = 3072
    """Train windows scored by the SLM for ``salt_ds`` (a seeded random subset of the train split)."""
    modes: tuple[str, ...] = ("baseline", "salt", "salt_ds")
    seed: int = 0
    device: str = "auto"
    max_docs: int | None = None

    def __post_init__(self) -> None:
        unknown = set(self.modes) - {"baseline", "salt", "salt_ds", "kd_full"}
        if unknown:
            raise SaltError(f"unknown demo mode(s): {', '.join(sorted(unknown))}",
                            "use baseline, salt, salt_ds or kd_full")
        if not 0.0 < self.kd_fraction <= 1.0:
            raise SaltError(f"kd fraction must be in (0, 1], got {self.kd_fraction}", "pass e.g. --kd-fraction 0.2")


def ensure_dataset(cfg: DemoConfig, report: Callable[[str], None]) -> PackedDataset:
    path = Path(cfg.root) / "data"
    if (path / "manifest.json").is_file():
        ds = PackedDataset(path)
        if ds.seq_len == cfg.seq_len and ds.manifest["corpus"]["source"] == cfg.source:
            report(f"reusing dataset {path}")
            return ds
        raise SaltError(f"{path} holds a dataset prepared with other settings", f"delete {path} or pass another --root")
    spec = CorpusSpec(source=cfg.source, max_docs=cfg.max_docs)
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
        return json.loads(summary.read_text())
    # Interrupted (a checkpoint, no summary): resume; finished with other settings: start again.
    resume = (out / CKPT_DIR / "trainer_state.pt").is_file() and not summary.is_file()
    report(f"{'resuming' if resume else 'training'} {tcfg.mode} {tcfg.preset} in {out} ({tcfg.steps} steps)")
    return train(tcfg, resume=resume, overwrite=not resume, progress=progress)


def ensure_selection(cfg: DemoConfig, client: SelectorClient, ds: PackedDataset, budget: int,
                     report: Callable[[str], None], progress: bool) -> str:
    """The demo's salt_ds selection: reused when the service still has it for the same SLM and budget."""
    record = Path(cfg.root) / "selection.json"
    info = client.model_info()
    if record.is_file():
        saved = json.loads(record.read_text())
        if saved.get("model_fingerprint") == info["fingerprint"] and saved.get("count") == budget:
            try:
                client.selection(saved["id"])
                report(f"reusing selection {saved['id']}")
                return str(saved["id"])
            except SelectorError:  # gone (a new cache database): make it again
                pass
    n = min(cfg.pool_windows, len(ds.train))
    if budget > n:
        raise SaltError(f"the salt_ds budget ({budget} windows) is larger than the pool ({n})",
                        "raise --pool-windows or lower the phase-one steps")
    indices = np.sort(np.random.default_rng(cfg.seed).choice(len(ds.train), size=n, replace=False))
    report(f"scoring a pool of {n} train windows with the SLM")
    job = score_pool(client, ds, name=f"demo-{n}-{cfg.seed}", indices=indices.tolist(), progress=progress)
    sel = select(client, job["pool_id"], "salt_ds", count=budget)
    report(f"selected {sel['count']} windows by SALT_DS score (selection {sel['id']})")
    record.write_text(json.dumps({"id": sel["id"], "model_fingerprint": info["fingerprint"], "count": budget}) + "\n")
    return str(sel["id"])


def run_demo(cfg: DemoConfig, *, report: Callable[[str], None] = log.info, progress: bool = True) -> Path:
    """Run the demo; returns the path of ``report.md``."""
    root = Path(cfg.root)
    ds = ensure_dataset(cfg, report)
    common: dict[str, Any] = {"data": str(ds.path), "batch_size": cfg.batch_size, "seed": cfg.seed,
                              "device": cfg.device}
    ensure_run(TrainConfig(out=str(root / "slm"), preset=cfg.slm_preset, steps=cfg.slm_steps, **common),
               report, progress)
    n_kd = max(1, round(cfg.kd_fraction * cfg.llm_steps))
    llm = {**common, "preset": cfg.llm_preset, "steps": cfg.llm_steps}
    runs: list[Path] = []
    if "baseline" in cfg.modes:
        ensure_run(TrainConfig(out=str(root / "baseline"), mode="baseline", **llm), report, progress)
        runs.append(root / "baseline")
    kd_modes = [m for m in cfg.modes if m != "baseline"]
    if kd_modes:
        db = f"sqlite:///{(root / 'cache.sqlite').resolve()}"
        with ServiceProcess(root / "slm" / CKPT_DIR, db) as svc:
            report(f"selector service on {svc.url} (cache {root / 'cache.sqlite'})")
            kd = {**llm, "service_url": svc.url, "kd_weight": cfg.kd_weight}
            for mode in kd_modes:
                extra: dict[str, Any] = {"n_kd": n_kd} if mode != "kd_full" else {}
                if mode == "salt_ds":
                    with SelectorClient(svc.url) as client:
                        extra["selection"] = ensure_selection(cfg, client, ds, n_kd * cfg.batch_size, report,
                                                              progress)
                ensure_run(TrainConfig(out=str(root / mode), mode=mode, **kd, **extra), report, progress)
                runs.append(root / mode)
    path = write_report(runs, root, teacher_run=root / "slm")
    (root / "demo.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    for line in path.read_text().splitlines():
        if line.startswith("|"):
            report(line)
    report(f"report: {path} (curves: {root / 'curves.png'})")
    return path
