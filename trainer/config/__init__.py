"""Settings of the trainer: a run's config, its groups and the allowed values, each written once."""

from trainer.config.choices import FAULT_POLICIES, KD_MODES, MODES, TRANSITIONS
from trainer.config.groups import EvalConfig, KDConfig, ModelConfig, OptimConfig, ServiceConfig
from trainer.config.train import RESUMABLE_CHANGES, TrainConfig

__all__ = [
    "FAULT_POLICIES", "KD_MODES", "MODES", "RESUMABLE_CHANGES", "TRANSITIONS", "EvalConfig", "KDConfig",
    "ModelConfig", "OptimConfig", "ServiceConfig", "TrainConfig",
]
