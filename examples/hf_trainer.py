"""SALT with Hugging Face's ``Trainer``: a ``compute_loss`` override and SALT's batches as the data.

    python examples/hf_trainer.py --data data/stdlib --service-url http://127.0.0.1:8000 \\
        --model my-llama/config.json --steps 300 --n-kd 60 --out runs/hf-trainer

Needs ``accelerate`` (``pip install accelerate``; the project's dev extras have it). The data loader yields
one ``StepBatch`` per optimizer step (``trainer.batches.SaltBatches``: windows with the SLM's soft labels in
phase one, raw windows after); ``compute_loss`` adds the KD term, weighted by the step's ``kd_weight``, to
the cross-entropy. The ``Trainer`` keeps its own optimizer and learning-rate schedule.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import transformers
from torch.utils.data import DataLoader, IterableDataset

from shared.data import PackedDataset
from trainer.batches import SaltBatches
from trainer.losses import TopKTailKDLoss, mixed_loss, next_token_ce


class StepBatches(IterableDataset):
    """SALT's batches as a dataset of whole batches (one item per step; the loader does not batch again)."""

    def __init__(self, batches: SaltBatches) -> None:
        self.batches = batches

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for batch in self.batches:
            (micro,) = batch.micro  # one micro-batch per step: the Trainer accumulates gradients itself
            yield {"input_ids": micro.inputs, "targets": micro.targets, "soft_labels": micro.labels,
                   "kd_weight": batch.kd_weight}


class SaltTrainer(transformers.Trainer):
    """A ``Trainer`` whose loss is SALT's phase-one mix of cross-entropy and distillation."""

    def __init__(self, *args: Any, salt_batches: SaltBatches, vocab_size: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.salt_batches = salt_batches
        self.vocab_size = vocab_size
        self.kd = TopKTailKDLoss()
        self.kd_log: list[float | None] = []

    def get_train_dataloader(self) -> DataLoader:
        return DataLoader(StepBatches(self.salt_batches), batch_size=None)

    def compute_loss(self, model: torch.nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        logits = model(input_ids=inputs["input_ids"]).logits[..., : self.vocab_size]  # (B, T, V)
        ce = next_token_ce(logits, inputs["targets"])
        weight = float(inputs["kd_weight"])
        kd = self.kd.of(logits, inputs["soft_labels"]) if weight > 0 else None
        self.kd_log.append(None if kd is None else kd.item())
        loss = mixed_loss(ce, kd, weight)
        return (loss, logits) if return_outputs else loss


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="prepared dataset folder (salt prepare)")
    p.add_argument("--service-url", required=True, help="selector service URL (salt serve)")
    p.add_argument("--model", required=True, help="a Hugging Face config.json (random init) or model folder")
    p.add_argument("--out", required=True, help="the Trainer's output folder (the model is saved there)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--n-kd", type=int, default=60, help="phase-one steps")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--kd-k", type=int, default=32)
    args = p.parse_args()

    transformers.set_seed(0)
    path = Path(args.model)
    if path.is_dir():
        model = transformers.AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True)
    else:
        model = transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.from_pretrained(str(path)))
    batches = SaltBatches.of(data=args.data, steps=args.steps, mode="salt", n_kd=args.n_kd, batch_size=args.batch_size,
                             warmup_steps=min(30, args.steps), kd_k=args.kd_k, service_url=args.service_url)
    training = transformers.TrainingArguments(
        output_dir=args.out, max_steps=args.steps, learning_rate=args.lr, lr_scheduler_type="cosine",
        warmup_steps=min(30, args.steps), logging_steps=max(1, args.steps // 10), save_strategy="no",
        report_to=[], use_cpu=not torch.cuda.is_available(), remove_unused_columns=False, disable_tqdm=True,
    )
    trainer = SaltTrainer(model=model, args=training, salt_batches=batches,
                          vocab_size=PackedDataset(args.data).vocab_size)
    with batches:
        result = trainer.train()
    trainer.save_model(args.out)
    kd_steps = sum(v is not None for v in trainer.kd_log)
    print(json.dumps({"summary": {"steps": result.global_step, "kd_steps": kd_steps, "loss": result.training_loss,
                                  "service": batches.usage()}}))


if __name__ == "__main__":
    main()
