"""Each optimizer step's batches, for ``salt train`` and for your own training loop.

Phase one (the first steps, while the KD weight is above 0): the step's windows with the SLM's soft labels
from the selector service, fetched ahead on a background thread with the client's retries and the run's
fault policy (``fail``: raise; ``fallback``: that micro-batch comes without labels and trains on
cross-entropy). Phase two: raw windows from the local dataset; the service is never contacted again.
The windows of a step are a pure function of (seed, step), so a resumed run sees the same data.

Your own loop::

    from trainer.batches import SaltBatches
    from trainer.losses import TopKTailKDLoss, mixed_loss, next_token_ce

    kd = TopKTailKDLoss()
    with SaltBatches.of(data="data/stdlib", steps=300, mode="salt", n_kd=60, batch_size=16,
                        service_url="http://127.0.0.1:8000") as batches:
        for batch in batches:                      # one StepBatch per optimizer step
            for micro in batch.micro:              # grad_accum micro-batches
                logits = model(micro.inputs)       # (B, T, V)
                ce = next_token_ce(logits, micro.targets)
                loss = mixed_loss(ce, kd.of(logits, micro.labels), batch.kd_weight)  # CE alone without labels
                ...

With ``kd_labels="sample"`` the labels are ``SampledLabels`` and the loss ``SampledKDLoss()``
(``trainer.losses.kd_loss_for(kind)``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import torch

from shared.data import PackedDataset
from shared.errors import SaltError
from trainer.config import TrainConfig
from trainer.distributed import World
from trainer.phase_one import PhaseOne
from trainer.prefetch import MicroBatch, TeacherFault
from trainer.sampling import batch_indices
from trainer.schedule import lr_at
from trainer.teacher import Teacher


@dataclass
class StepBatch:
    """The data of one optimizer step."""

    step: int
    """0-based optimizer step."""
    kd_weight: float
    """The schedule's KD weight w for this step (0 in phase two)."""
    lr: float
    """The schedule's learning rate for this step (warm-up, then cosine)."""
    micro: list[MicroBatch]
    """``grad_accum`` micro-batches; ``labels`` None in phase two, or where a fault fell back to CE."""
    wait_s: float
    """Seconds the caller waited for this step's data (phase one's data stall)."""
    teacher_s: float
    """Seconds the service took for this step's labels (on the background thread)."""

    @property
    def fallbacks(self) -> int:
        """Micro-batches that should have had labels but came without (service faults under ``fallback``)."""
        return sum(self.kd_weight > 0 and m.labels is None for m in self.micro)


class StepBatches:
    """Step -> ``StepBatch`` for a run: the teacher in phase one, the local dataset after.

    Args:
        phase_one: when phase one ends (default: after n_kd steps, or not yet decided for ``kd_until auto``).
    """

    def __init__(self, cfg: TrainConfig, ds: PackedDataset, teacher: Teacher | None, world: World | None = None,
                 *, start_step: int = 0, phase_one: PhaseOne | None = None) -> None:
        self.cfg = cfg
        self.ds = ds
        self.teacher = teacher
        self.world = world or World()
        self.phase_one = phase_one or PhaseOne(cfg)
        if teacher is not None:
            teacher.start(range(start_step, self.phase_one.phase_one_end))

    def get(self, step: int) -> StepBatch:
        """The batches of ``step`` (steps are asked for in order); raises TeacherFault under ``fail``."""
        cfg, teacher, o, end = self.cfg, self.teacher, self.cfg.optim, self.phase_one.phase_one_end
        weight = self.phase_one.weight_at(step)
        lr = lr_at(step, peak=o.lr, warmup=o.warmup_steps, total=cfg.steps, min_ratio=o.min_lr_ratio)
        if teacher is not None and step < end:
            t0 = time.perf_counter()
            data = teacher.get(step)
            return StepBatch(step, weight, lr, data.micro, time.perf_counter() - t0, data.fetch_s)
        if teacher is not None and step == end:
            teacher.finish()  # phase two: the service is never contacted again
        return StepBatch(step, weight, lr, [MicroBatch(self.local(step, m), None) for m in range(o.grad_accum)],
                         0.0, 0.0)

    def end_phase_one(self, step: int) -> None:
        """End full-weight KD at ``step`` (the next step to train): the transition starts there, and no labels
        are asked for steps past the new end (those already asked for are dropped)."""
        self.phase_one.decided = step
        if self.teacher is not None:
            self.teacher.stop_before(self.phase_one.phase_one_end)

    def local(self, step: int, micro: int) -> torch.Tensor:
        """This rank's rows of a global micro-batch of raw training windows: (b, T + 1) int64."""
        o = self.cfg.optim
        idx = batch_indices(step, micro, n=len(self.ds.train), batch_size=o.batch_size, grad_accum=o.grad_accum,
                            seed=self.cfg.seed)
        return self.ds.train.batch(self.world.shard(idx))


class SaltBatches:
    """Every step's ``StepBatch`` of a run, as an iterable for your own loop (see the module's docstring).

    Connecting checks the service against the dataset first (vocabulary, tokenizer, context, k and, for
    ``salt_ds``, the selection). Use it as a context manager, or call ``close``, to stop the prefetch thread.

    Args:
        cfg: the run's settings (data, steps, batch, seed, mode, n_kd, KD and service settings).
        start_step: the first step to give (a resumed run starts at its checkpoint's step).
        world: this process's rank and world size under ``torchrun`` (each rank gets its rows only).
    """

    def __init__(self, cfg: TrainConfig, *, start_step: int = 0, world: World | None = None) -> None:
        self.cfg = cfg
        self.start_step = start_step
        self.ds = PackedDataset(cfg.data)
        teacher = Teacher.connect(cfg, self.ds, world) if start_step < PhaseOne(cfg).phase_one_end else None
        self.steps = StepBatches(cfg, self.ds, teacher, world, start_step=start_step)

    @classmethod
    def of(cls, *, start_step: int = 0, world: World | None = None, **settings: Any) -> SaltBatches:
        """``SaltBatches(TrainConfig.of(**settings))``: settings by their ``salt train`` names."""
        return cls(TrainConfig.of(**settings), start_step=start_step, world=world)

    def __iter__(self) -> Iterator[StepBatch]:
        try:
            for step in range(self.start_step, self.cfg.steps):
                try:
                    yield self.steps.get(step)
                except TeacherFault as e:
                    raise SaltError(str(e), "restart the service and start again from this step, "
                                            "or use fault_policy='fallback'") from e
        finally:
            self.close()

    def end_phase_one(self, step: int) -> None:
        """End phase one at ``step`` (your own ``--kd-until auto``): see ``StepBatches.end_phase_one``."""
        self.steps.end_phase_one(step)

    def usage(self) -> dict[str, object] | None:
        """What the run asked of the service so far (requests, fallbacks, cache hits...); None without one."""
        teacher = self.steps.teacher
        return teacher.usage() if teacher is not None else None

    def close(self) -> None:
        if self.steps.teacher is not None:
            self.steps.teacher.close()

    def __enter__(self) -> SaltBatches:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


__all__ = ["MicroBatch", "SaltBatches", "StepBatch", "StepBatches"]
