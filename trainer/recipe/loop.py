"""``train``: the recipe put together. Checks, set-up, the loop of steps with its evaluations and
checkpoints, and the run summary.

Under ``torchrun`` (``WORLD_SIZE`` > 1) this is one data-parallel rank (see ``trainer.distributed``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from shared.data import PackedDataset
from shared.errors import SaltError
from trainer.config import TrainConfig
from trainer.distributed import all_sum, barrier, env_world, setup, teardown
from trainer.phase_one import PhaseOne
from trainer.recipe.checkpointing import CKPT_DIR, saved_kd_end
from trainer.recipe.metrics import last_eval, write_summary
from trainer.recipe.setup import RunState, build_run, check_run_folder, fresh_student
from trainer.recipe.step import checkpoint_step, eval_step, train_step
from trainer.teacher import Teacher


def train(cfg: TrainConfig, *, resume: bool = False, overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train a model as ``cfg`` says; returns the run summary (also written to ``summary.json``).

    Args:
        cfg: the run's settings.
        resume: continue the run in ``cfg.out`` from its checkpoint (exactly: same parameters and metrics
            as an uninterrupted run).
        overwrite: delete a non-empty ``cfg.out`` first.
        progress: show a progress bar.
    """
    t_start = time.perf_counter()
    world = env_world()
    device = setup(world, cfg.device, batch_size=cfg.optim.batch_size)
    try:
        ds = PackedDataset(cfg.data)
        block_size = cfg.arch.block_size or ds.seq_len
        if cfg.arch.model is None and ds.seq_len > block_size:
            raise SaltError(f"dataset seq_len {ds.seq_len} is larger than the model's context {block_size}",
                            f"pass --block-size {ds.seq_len} or larger, or prepare with a smaller --seq-len")
        first_step = check_run_folder(cfg, resume=resume, overwrite=overwrite)
        phase_one = PhaseOne(cfg, saved_kd_end(Path(cfg.out)) if resume else None)
        # The model and the service are checked before any training starts (and before --out is touched).
        student = None if resume else fresh_student(cfg, ds)
        teacher = Teacher.connect(cfg, ds, world) if first_step < phase_one.phase_one_end else None
        try:
            barrier(world)  # every rank has checked the run folder before rank 0 clears it
            state = build_run(cfg, ds, device, world, teacher, student=student, phase_one=phase_one)
            run_steps(state, progress=progress)
            return summarize(state, t_start)
        finally:
            if teacher is not None:
                teacher.close()
    finally:
        teardown(world)


def run_steps(state: RunState, *, progress: bool) -> None:
    """The loop: every step from the start step to the end, evaluating and checkpointing on schedule."""
    cfg = state.cfg
    if state.start_step == 0:
        eval_step(state, 0)
    bar = tqdm(total=cfg.steps, initial=state.start_step, disable=not progress or not state.world.main,
               unit="step", dynamic_ncols=True)
    state.model.train()
    try:
        for step in range(state.start_step, cfg.steps):
            record = train_step(state, step)
            state.metrics.write(record)
            done = record["step"]
            bar.update(1)
            postfix = {"loss": f"{record['loss']:.3f}", "tok_s": f"{record['tok_per_s']:,.0f}"}
            if done % cfg.eval.eval_every == 0 or done == cfg.steps:
                postfix = {"loss": postfix["loss"], "val": f"{eval_step(state, done)['val_loss']:.3f}"}
            bar.set_postfix(postfix, refresh=False)
            if done % cfg.eval.ckpt_every == 0 or done == cfg.steps:
                checkpoint_step(state, done)
    finally:
        bar.close()
        state.metrics.close()


def summarize(state: RunState, t_start: float) -> dict[str, Any]:
    """The run summary (written to ``summary.json`` by rank 0) from the finished run's state and metrics."""
    cfg, world, teacher, totals = state.cfg, state.world, state.teacher, state.totals
    if teacher is not None:
        teacher.finish()  # a run that ends in phase one (kd_full) reads the service's counters here
    service = teacher.usage() if teacher is not None else None
    if world.parallel and service is not None:  # requests and fallbacks of all ranks
        service["requests"], service["fallback_batches"] = (int(v) for v in all_sum(
            world, [float(service["requests"]), float(service["fallback_batches"])], state.device))  # type: ignore[arg-type]
    barrier(world)  # the last checkpoint and metrics are written before any rank reads or leaves
    final = state.last_eval or last_eval(state.out)  # resumed at the very end: nothing was left to run
    tokens = cfg.steps * state.tokens_per_step
    summary = {
        "mode": cfg.mode, "preset": cfg.arch.name, "seed": cfg.seed, "steps": cfg.steps,
        "params": state.model.num_params(), "tokens": tokens,
        "val_loss": final["val_loss"], "val_acc": final["val_acc"],
        "kd_steps": cfg.kd_steps, "kd_end_step": state.phase_one.end_step if cfg.kd_steps else None,
        "phase_one_end": state.phase_one.phase_one_end, **totals,
        "data_stall_fraction": totals["data_wait_s"] / totals["train_s"] if totals["train_s"] else 0.0,
        "wall_s_this_process": time.perf_counter() - t_start,
        "tok_per_s": tokens / totals["train_s"] if totals["train_s"] else None,
        "service": service,
        "dataset_fingerprint": state.ds.fingerprint, "checkpoint": str(Path(cfg.out) / CKPT_DIR),
        "device": str(state.device), "config": cfg.to_dict(), "processes": world.size,
    }
    if world.main:
        write_summary(state.out, summary)
    return summary
