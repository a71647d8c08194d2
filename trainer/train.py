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

import torch
from tqdm import tqdm

from shared.data import PackedDataset
from shared.device import resolve_precision
from shared.errors import SaltError
from shared.model import GPT, GPTConfig
from shared.softlabels import SoftLabels
from trainer.checkpointing import CKPT_DIR, load_checkpoint, save_checkpoint
from trainer.config import RESUMABLE_CHANGES, TrainConfig
from trainer.distributed import World, all_sum, barrier, env_world, setup, teardown
from trainer.evaluate import evaluate
from trainer.losses import TopKTailKDLoss, mixed_loss, next_token_ce
from trainer.sampling import batch_indices
from trainer.schedule import kd_weight_at, lr_at
from trainer.teacher import Teacher, TeacherFault

log = logging.getLogger(__name__)
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"


def autocast_for(device: torch.device, precision: str) -> contextlib.AbstractContextManager[object]:
    """bf16 autocast for ``bf16``, and for ``auto`` where the device runs bf16 natively (recent GPUs; CPUs
    with AVX512-BF16 or AMX, where it is about twice as fast as fp32); no autocast otherwise."""
    if resolve_precision(precision, device) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def make_optimizer(model: GPT, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (embeddings included), none on norms and biases."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=device.type == "cuda")


class _NoMetrics:
    """What ranks other than 0 write metrics to: nothing."""

    def write(self, record: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


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


def _step_loss(
    model: GPT, windows: torch.Tensor, labels: SoftLabels | None, weight: float, kd: TopKTailKDLoss
) -> tuple[torch.Tensor, float, float | None]:
    """Loss of one micro-batch: (1 - w) * CE + w * KD, or CE alone without labels; also CE and KD values."""
    logits = model(windows[:, :-1])  # (B, T, V)
    ce = next_token_ce(logits, windows[:, 1:])
    if labels is None or weight == 0.0:
        return ce, ce.item(), None
    dev = logits.device
    L = labels.ids.shape[1]
    mask = None
    if bool((labels.lengths < L).any()):
        mask = torch.arange(L, device=dev).unsqueeze(0) < labels.lengths.to(dev).unsqueeze(1)  # (B, L)
    kd_val = kd(logits, labels.ids.to(dev), labels.logprobs.to(dev), labels.tail.to(dev), mask)
    return mixed_loss(ce, kd_val, weight), ce.item(), kd_val.item()


def _saved_step(out: Path) -> int:
    try:
        return int(json.loads((out / CKPT_DIR / "config.json").read_text())["step"])
    except (OSError, ValueError, KeyError) as e:
        raise SaltError(f"{out} has no readable checkpoint to resume from", "run without --resume") from e


def train(cfg: TrainConfig, *, resume: bool = False, overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train a model as ``cfg`` says; returns the run summary (also written to ``summary.json``).

    Under ``torchrun`` (``WORLD_SIZE`` > 1) this is one data-parallel rank (see ``trainer.distributed``).
    """
    t_start = time.perf_counter()
    world = env_world()
    device = setup(world, cfg.device, batch_size=cfg.batch_size)
    try:
        return _train_checked(cfg, world, device, resume=resume, overwrite=overwrite, progress=progress,
                              t_start=t_start)
    finally:
        teardown(world)


def _train_checked(cfg: TrainConfig, world: World, device: torch.device, *, resume: bool, overwrite: bool,
                   progress: bool, t_start: float) -> dict[str, Any]:
    out = Path(cfg.out)
    ds = PackedDataset(cfg.data)
    block_size = cfg.block_size or ds.seq_len
    if ds.seq_len > block_size:
        raise SaltError(f"dataset seq_len {ds.seq_len} is larger than the model's context {block_size}",
                        f"pass --block-size {ds.seq_len} or larger, or prepare with a smaller --seq-len")
    if resume and not (out / CKPT_DIR).exists():
        raise SaltError(f"{out} has no checkpoint to resume from", "run without --resume to start fresh")
    if not resume and out.exists() and any(out.iterdir()) and not overwrite:
        raise SaltError(f"run folder {out} is not empty", "pass --resume to continue it or --overwrite")
    first_step = _saved_step(out) if resume else 0
    # Everything about the service is checked before any training starts (and before --out is touched).
    teacher = Teacher.connect(cfg, ds, world) if first_step < cfg.phase_one_end else None
    try:
        barrier(world)  # every rank has checked the run folder before rank 0 clears it
        return _train(cfg, ds, device, block_size, teacher, world, resume=resume, progress=progress,
                      t_start=t_start)
    finally:
        if teacher is not None:
            teacher.close()


def _train(
    cfg: TrainConfig, ds: PackedDataset, device: torch.device, block_size: int, teacher: Teacher | None,
    world: World, *, resume: bool, progress: bool, t_start: float,
) -> dict[str, Any]:
    out = Path(cfg.out)
    if world.main:
        if not resume and out.exists():
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
        prior = state["extra"].get("totals", {})
    else:
        tok = ds.tokenizer()
        torch.manual_seed(cfg.seed)
        gcfg = GPTConfig.from_preset(cfg.preset, vocab_size=ds.vocab_size, block_size=block_size)
        model = GPT(gcfg).to(device)
        optimizer = make_optimizer(model, cfg, device)
        prior = {}
    autocast = autocast_for(device, cfg.precision)
    # DDP broadcasts rank 0's parameters at construction; every rank built or loaded the same ones anyway.
    ddp = torch.nn.parallel.DistributedDataParallel(model) if world.parallel else None
    forward_model = ddp if ddp is not None else model
    metrics = MetricsLog(out / METRICS, resume_step=start_step if resume else None) if world.main else _NoMetrics()
    tokens_per_step = cfg.batch_size * cfg.grad_accum * ds.seq_len
    kd_loss = TopKTailKDLoss(cfg.kd_temperature)
    # Totals carried across resumptions (saved with each checkpoint).
    totals = {"train_s": 0.0, "data_wait_s": 0.0, "teacher_s": 0.0, "fallback_batches": 0, **prior}
    log.info("%s: %s %s (%s params) on %s, %d steps of %d tokens%s", out, cfg.mode, cfg.preset,
             f"{model.num_params():,}", device, cfg.steps, tokens_per_step,
             f", phase one (KD) until step {cfg.phase_one_end}" if cfg.phase_one_end else "")

    def local_batch(step: int, micro: int) -> torch.Tensor:
        idx = batch_indices(step, micro, n=len(ds.train), batch_size=cfg.batch_size, grad_accum=cfg.grad_accum,
                            seed=cfg.seed)
        return ds.train.batch(world.shard(idx))  # this rank's rows of the global micro-batch

    def run_eval(step: int) -> dict[str, float]:
        ev = evaluate(model, ds.val, max_windows=cfg.eval_windows, batch_size=cfg.batch_size,
                      device=device, autocast=autocast, world=world)
        metrics.write({"kind": "eval", "step": step, **ev})
        return ev

    def checkpoint(step: int) -> None:
        if world.main:  # the ranks hold the same parameters and optimizer state: one copy is written
            extra = {"dataset_fingerprint": ds.fingerprint, "totals": totals}
            save_checkpoint(out, model, tok, optimizer, step=step, config=cfg.to_dict(), extra=extra)

    if teacher is not None:
        teacher.start(range(start_step, cfg.phase_one_end))
    last_eval = run_eval(0) if start_step == 0 else {}
    bar = tqdm(total=cfg.steps, initial=start_step, disable=not progress or not world.main, unit="step",
               dynamic_ncols=True)
    model.train()
    try:
        for step in range(start_step, cfg.steps):
            t0 = time.perf_counter()
            weight = kd_weight_at(step, weight=cfg.kd_weight, n_kd=cfg.kd_steps, transition=cfg.kd_transition,
                                  transition_steps=cfg.kd_transition_steps)
            wait = 0.0
            if teacher is not None and step < cfg.phase_one_end:
                try:
                    data = teacher.get(step)
                except TeacherFault as e:
                    checkpoint(step)
                    raise SaltError(f"{e}; checkpoint of step {step} kept in {out / CKPT_DIR}",
                                    "restart the service and pass --resume, or use --fault-policy fallback") from e
                wait = time.perf_counter() - t0
                micro = [(m.windows, m.labels) for m in data.micro]
                totals["teacher_s"] += data.fetch_s
            else:
                if teacher is not None and step == cfg.phase_one_end:
                    teacher.finish()  # phase two: the service is never contacted again
                micro = [(local_batch(step, m), None) for m in range(cfg.grad_accum)]
            lr = lr_at(step, peak=cfg.lr, warmup=cfg.warmup_steps, total=cfg.steps, min_ratio=cfg.min_lr_ratio)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            loss_value = ce_value = 0.0
            kd_value: float | None = None
            fallbacks = 0
            for i, (windows, labels) in enumerate(micro):
                windows = windows.to(device, non_blocking=True)
                fallbacks += int(weight > 0 and labels is None)
                # DDP averages the gradients over the ranks once per step, at the last micro-batch.
                sync = ddp.no_sync() if ddp is not None and i < len(micro) - 1 else contextlib.nullcontext()
                with sync:
                    with autocast:
                        loss, ce_v, kd_v = _step_loss(forward_model, windows, labels, weight, kd_loss)
                    (loss / cfg.grad_accum).backward()
                loss_value += loss.item() / cfg.grad_accum
                ce_value += ce_v / cfg.grad_accum
                if kd_v is not None:
                    kd_value = (kd_value or 0.0) + kd_v / cfg.grad_accum
            if world.parallel:  # the step's figures over the whole global batch, the same on every rank
                has_kd = float(kd_value is not None)
                loss_value, ce_value, kd_sum, kd_ranks, fallbacks_f = all_sum(
                    world, [loss_value, ce_value, kd_value or 0.0, has_kd, float(fallbacks)], device)
                loss_value, ce_value = loss_value / world.size, ce_value / world.size
                kd_value = kd_sum / kd_ranks if kd_ranks else None
                fallbacks = int(fallbacks_f)
            if not math.isfinite(loss_value):
                raise SaltError(f"loss became {loss_value} at step {step + 1}",
                                "lower --lr or resume from the last checkpoint")
            clip = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
            grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip))
            optimizer.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            totals["train_s"] += dt
            totals["data_wait_s"] += wait
            totals["fallback_batches"] += fallbacks
            done = step + 1
            record = {"kind": "train", "step": done, "loss": loss_value, "ce": ce_value, "kd": kd_value,
                      "kd_weight": weight, "lr": lr, "grad_norm": grad_norm, "tokens": done * tokens_per_step,
                      "step_s": dt, "data_wait_s": wait, "fallback_batches": fallbacks,
                      "tok_per_s": tokens_per_step / dt}
            metrics.write(record)
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.3f}", tok_s=f"{tokens_per_step / dt:,.0f}", refresh=False)
            if done % cfg.eval_every == 0 or done == cfg.steps:
                last_eval = run_eval(done)
                bar.set_postfix(loss=f"{loss_value:.3f}", val=f"{last_eval['val_loss']:.3f}", refresh=False)
            if done % cfg.ckpt_every == 0 or done == cfg.steps:
                checkpoint(done)
    finally:
        bar.close()
        metrics.close()

    if teacher is not None:
        teacher.finish()  # a run that ends in phase one (kd_full) reads the service's counters here
    service = teacher.usage() if teacher is not None else None
    if world.parallel and service is not None:  # requests and fallbacks of all ranks
        service["requests"], service["fallback_batches"] = (int(v) for v in all_sum(
            world, [float(service["requests"]), float(service["fallback_batches"])], device))  # type: ignore[arg-type]
    barrier(world)  # the last checkpoint and metrics are written before any rank reads or leaves
    if not last_eval:  # resumed at the very end: nothing left to run
        last_eval = run_eval_last(out)
    summary = {
        "mode": cfg.mode, "preset": cfg.preset, "seed": cfg.seed, "steps": cfg.steps,
        "params": model.num_params(), "tokens": cfg.steps * tokens_per_step,
        "val_loss": last_eval["val_loss"], "val_acc": last_eval["val_acc"],
        "kd_steps": cfg.kd_steps, "phase_one_end": cfg.phase_one_end, **totals,
        "data_stall_fraction": totals["data_wait_s"] / totals["train_s"] if totals["train_s"] else 0.0,
        "wall_s_this_process": time.perf_counter() - t_start,
        "tok_per_s": cfg.steps * tokens_per_step / totals["train_s"] if totals["train_s"] else None,
        "service": service,
        "dataset_fingerprint": ds.fingerprint, "checkpoint": str(out / CKPT_DIR), "device": str(device),
        "config": cfg.to_dict(), "processes": world.size,
    }
    if world.main:
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
