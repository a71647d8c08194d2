"""The training loop: AdamW, warm-up + cosine, clipping, accumulation, eval, checkpoints, exact resume."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from shared.data import PackedDataset
from shared.errors import SaltError
from shared.model import GPT, GPTConfig
from trainer.checkpointing import CKPT_DIR, load_checkpoint, save_checkpoint
from trainer.config import RESUMABLE_CHANGES, TrainConfig
from trainer.evaluate import evaluate
from trainer.schedule import lr_at

log = logging.getLogger(__name__)
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SaltError(f"device {name} requested but CUDA is not available", "pass --device cpu")
    return dev


def autocast_for(device: torch.device, precision: str) -> contextlib.AbstractContextManager[object]:
    """bf16 autocast where the device runs it natively; fp32 (no autocast) otherwise."""
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return contextlib.nullcontext()
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        if precision == "bf16":
            raise SaltError("bf16 requested but this GPU does not support it", "pass --precision fp32")
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def batch_indices(step: int, micro: int, *, n: int, batch_size: int, grad_accum: int, seed: int) -> np.ndarray:
    """Window indices of one micro-batch: a pure function of (seed, step, micro), so resume is exact.

    Samples are drawn epoch by epoch from a seeded permutation of the ``n`` training windows.
    """
    first = (step * grad_accum + micro) * batch_size
    out = np.empty(batch_size, dtype=np.int64)
    for j, g in enumerate(range(first, first + batch_size)):
        epoch, pos = divmod(g, n)
        out[j] = _permutation(seed, epoch, n)[pos]
    return out


_PERM_CACHE: dict[tuple[int, int, int], np.ndarray] = {}


def _permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    key = (seed, epoch, n)
    if key not in _PERM_CACHE:
        if len(_PERM_CACHE) > 4:
            _PERM_CACHE.clear()
        _PERM_CACHE[key] = np.random.default_rng([seed, epoch]).permutation(n)
    return _PERM_CACHE[key]


def make_optimizer(model: GPT, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (embeddings included), none on norms and biases."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=device.type == "cuda")


def lm_loss(model: GPT, windows: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy of a (B, T + 1) batch of windows."""
    logits = model(windows[:, :-1])  # (B, T, V)
    return F.cross_entropy(logits.float().flatten(0, 1), windows[:, 1:].flatten())


class MetricsLog:
    """Append-only JSON lines; on resume, lines past the checkpoint's step are dropped (they are redone)."""

    def __init__(self, path: Path, *, resume_step: int | None) -> None:
        self.path = path
        if resume_step is not None and path.exists():
            kept = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["step"] <= resume_step]
            path.write_text("".join(ln + "\n" for ln in kept))
        self._f = path.open("a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self._f.write(json.dumps(record) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def _check_resume(saved: dict[str, Any], cfg: TrainConfig) -> None:
    old = TrainConfig.from_dict(saved).to_dict()
    diff = [k for k, v in cfg.to_dict().items() if k not in RESUMABLE_CHANGES and old.get(k) != v]
    if diff:
        changes = ", ".join(f"{k}: {old.get(k)!r} -> {getattr(cfg, k)!r}" for k in diff)
        raise SaltError(f"cannot resume with a different configuration ({changes})",
                        "pass the original options or start a new run folder")


def train(cfg: TrainConfig, *, resume: bool = False, overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train a model as ``cfg`` says; returns the run summary (also written to ``summary.json``)."""
    t_start = time.perf_counter()
    out = Path(cfg.out)
    ds = PackedDataset(cfg.data)
    device = resolve_device(cfg.device)
    block_size = cfg.block_size or ds.seq_len
    if ds.seq_len > block_size:
        raise SaltError(f"dataset seq_len {ds.seq_len} is larger than the model's context {block_size}",
                        f"pass --block-size {ds.seq_len} or larger, or prepare with a smaller --seq-len")
    if resume and not (out / CKPT_DIR).exists():
        raise SaltError(f"{out} has no checkpoint to resume from", "run without --resume to start fresh")
    if not resume and out.exists() and any(out.iterdir()):
        if not overwrite:
            raise SaltError(f"run folder {out} is not empty", "pass --resume to continue it or --overwrite")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)

    start_step = 0
    if resume:
        model, tok, state = load_checkpoint(out, device=device)
        _check_resume(state["config"], cfg)
        ds.check_tokenizer(tok, what=f"the checkpoint's tokenizer in {out}")
        if state["extra"].get("dataset_fingerprint") != ds.fingerprint:
            raise SaltError(f"the checkpoint in {out} was trained on another dataset", "pass the original --data")
        optimizer = make_optimizer(model, cfg, device)
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        start_step = int(state["step"])
        model.train()
    else:
        tok = ds.tokenizer()
        torch.manual_seed(cfg.seed)
        gcfg = GPTConfig.from_preset(cfg.preset, vocab_size=ds.vocab_size, block_size=block_size)
        model = GPT(gcfg).to(device)
        optimizer = make_optimizer(model, cfg, device)
    autocast = autocast_for(device, cfg.precision)
    metrics = MetricsLog(out / METRICS, resume_step=start_step if resume else None)
    extra = {"dataset_fingerprint": ds.fingerprint}
    tokens_per_step = cfg.batch_size * cfg.grad_accum * ds.seq_len
    log.info("%s: %s (%s params) on %s, %d steps of %d tokens", out, cfg.preset,
             f"{model.num_params():,}", device, cfg.steps, tokens_per_step)

    def run_eval(step: int) -> dict[str, float]:
        ev = evaluate(model, ds.val, max_windows=cfg.eval_windows, batch_size=cfg.batch_size,
                      device=device, autocast=autocast)
        metrics.write({"kind": "eval", "step": step, **ev})
        return ev

    last_eval = run_eval(0) if start_step == 0 else {}
    bar = tqdm(total=cfg.steps, initial=start_step, disable=not progress, unit="step", dynamic_ncols=True)
    train_time = 0.0
    model.train()
    try:
        for step in range(start_step, cfg.steps):
            t0 = time.perf_counter()
            lr = lr_at(step, peak=cfg.lr, warmup=cfg.warmup_steps, total=cfg.steps, min_ratio=cfg.min_lr_ratio)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            loss_value = 0.0
            for micro in range(cfg.grad_accum):
                idx = batch_indices(step, micro, n=len(ds.train), batch_size=cfg.batch_size,
                                    grad_accum=cfg.grad_accum, seed=cfg.seed)
                windows = ds.train.batch(idx).to(device, non_blocking=True)
                with autocast:
                    loss = lm_loss(model, windows)
                (loss / cfg.grad_accum).backward()
                loss_value += loss.item() / cfg.grad_accum
            if not math.isfinite(loss_value):
                raise SaltError(f"loss became {loss_value} at step {step + 1}",
                                "lower --lr or resume from the last checkpoint")
            clip = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
            grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip))
            optimizer.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            train_time += dt
            done = step + 1
            metrics.write({"kind": "train", "step": done, "loss": loss_value, "lr": lr, "grad_norm": grad_norm,
                           "tokens": done * tokens_per_step, "step_s": dt, "tok_per_s": tokens_per_step / dt})
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.3f}", tok_s=f"{tokens_per_step / dt:,.0f}", refresh=False)
            if done % cfg.eval_every == 0 or done == cfg.steps:
                last_eval = run_eval(done)
                bar.set_postfix(loss=f"{loss_value:.3f}", val=f"{last_eval['val_loss']:.3f}", refresh=False)
            if done % cfg.ckpt_every == 0 or done == cfg.steps:
                save_checkpoint(out, model, tok, optimizer, step=done, config=cfg.to_dict(), extra=extra)
    finally:
        bar.close()
        metrics.close()

    if not last_eval:  # resumed at the very end: nothing left to run
        last_eval = run_eval_last(out)
    summary = {
        "mode": cfg.mode, "preset": cfg.preset, "seed": cfg.seed, "steps": cfg.steps,
        "params": model.num_params(), "tokens": cfg.steps * tokens_per_step,
        "val_loss": last_eval["val_loss"], "val_acc": last_eval["val_acc"],
        "train_s_this_process": train_time, "wall_s_this_process": time.perf_counter() - t_start,
        "tok_per_s": (cfg.steps - start_step) * tokens_per_step / train_time if train_time else None,
        "dataset_fingerprint": ds.fingerprint, "checkpoint": str(out / CKPT_DIR), "device": str(device),
    }
    (out / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def run_eval_last(out: Path) -> dict[str, float]:
    """The last eval record of a run's metrics file."""
    evals = [r for r in read_metrics(out) if r["kind"] == "eval"]
    if not evals:
        raise SaltError(f"{out / METRICS} holds no evaluation", "re-run the training")
    return evals[-1]


def read_metrics(out: str | Path) -> list[dict[str, Any]]:
    path = Path(out) / METRICS
    if not path.is_file():
        raise SaltError(f"{path} not found", "pass a run folder written by `salt train`")
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
