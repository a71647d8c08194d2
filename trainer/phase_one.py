"""When a run's phase one ends: after n_kd steps, or, with ``--kd-until auto``, at the first evaluation
where the student's validation loss comes within ``kd_auto_margin`` nats of the SLM's on the same windows.

n_kd stays the most phase one lasts; an auto run that never gets close distils for n_kd steps. After the
end the configured transition (``trainer.schedule.kd_weight_at``) starts from that step. The decision is
kept in every checkpoint, so a resumed run keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass

from trainer.config import TrainConfig
from trainer.schedule import kd_fall_steps, kd_weight_at


@dataclass
class PhaseOne:
    """A run's phase one: its end step (fixed, or decided during the run) and the KD weight of each step."""

    cfg: TrainConfig
    decided: int | None = None
    """The step ``--kd-until auto`` ended phase one at (None: not decided, or a fixed n_kd)."""

    @property
    def auto(self) -> bool:
        """Whether the end is decided by evaluations (``--kd-until auto`` in a mode with a phase one)."""
        return self.cfg.kd.kd_until == "auto" and self.cfg.kd_steps > 0

    @property
    def end_step(self) -> int:
        """First step past full KD weight: the decided step, else n_kd as resolved for the mode (0: no KD)."""
        return self.decided if self.decided is not None else self.cfg.kd_steps

    @property
    def phase_one_end(self) -> int:
        """First step whose KD weight is 0 (phase two starts there and never calls the service)."""
        kd = self.cfg.kd
        extra = kd_fall_steps(kd.kd_transition, kd.kd_transition_steps) if self.cfg.kd_steps > 0 else 0
        return min(self.cfg.steps, self.end_step + extra)

    def weight_at(self, step: int) -> float:
        """The KD weight of optimizer step ``step`` (0-based)."""
        kd = self.cfg.kd
        return kd_weight_at(step, weight=kd.kd_weight, end_step=self.end_step, transition=kd.kd_transition,
                            transition_steps=kd.kd_transition_steps, warmup_steps=kd.kd_warmup_steps)

    def open_at(self, step: int) -> bool:
        """Whether an evaluation after ``step`` steps may still end phase one (auto, undecided, before n_kd)."""
        return self.auto and self.decided is None and step < self.cfg.kd_steps

    def close_enough(self, val_loss: float, slm_val_loss: float) -> bool:
        """Whether the student's validation loss is within the margin of the SLM's."""
        return val_loss <= slm_val_loss + self.cfg.kd.kd_auto_margin
