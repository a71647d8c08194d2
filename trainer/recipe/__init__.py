"""The training recipe (torchtune's shape, nanoGPT's readable loop): set-up, step, evaluation, checkpoint.

``train(cfg)`` runs it end to end; ``setup``, ``step`` and ``loop`` hold its parts, ``metrics`` the one
reader and writer of a run's ``metrics.jsonl`` and ``summary.json``.
"""

from trainer.recipe.loop import train

__all__ = ["train"]
