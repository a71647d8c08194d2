"""SALT in your own PyTorch loop, training a Hugging Face model.

    python examples/own_loop.py --data data/stdlib --service-url http://127.0.0.1:8000 \\
        --model my-llama/config.json --steps 300 --n-kd 60 --out runs/own-loop

The selector service (``salt serve``) hosts the SLM. ``SaltBatches`` gives each optimizer step's windows:
in phase one (the first ``--n-kd`` steps) with the SLM's soft labels, prefetched from the service on a
background thread; afterwards raw windows from the local dataset, without the service. The loss is
``(1 - w) * CE + w * KD`` with w from the same schedule ``salt train`` uses (``batch.kd_weight``), and the
learning rate is the schedule's too (``batch.lr``). The model is saved with ``save_pretrained``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import transformers

from shared.data import PackedDataset
from trainer.batches import SaltBatches
from trainer.losses import TopKTailKDLoss, mixed_loss, next_token_ce


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="prepared dataset folder (salt prepare)")
    p.add_argument("--service-url", required=True, help="selector service URL (salt serve)")
    p.add_argument("--model", required=True, help="a Hugging Face config.json (random init) or model folder")
    p.add_argument("--out", required=True, help="folder to save the trained model in")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--n-kd", type=int, default=60, help="phase-one steps")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--kd-k", type=int, default=32)
    args = p.parse_args()

    torch.manual_seed(0)
    model_path = Path(args.model)
    if model_path.is_dir():
        model = transformers.AutoModelForCausalLM.from_pretrained(str(model_path), local_files_only=True)
    else:
        model = transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.from_pretrained(str(model_path)))
    vocab = PackedDataset(args.data).vocab_size  # logits past it (padding rows) are not trained
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1)
    kd = TopKTailKDLoss()
    log = []
    model.train()
    with SaltBatches.of(data=args.data, steps=args.steps, mode="salt", n_kd=args.n_kd, batch_size=args.batch_size,
                        lr=args.lr, warmup_steps=min(30, args.steps), kd_k=args.kd_k,
                        service_url=args.service_url) as batches:
        for batch in batches:
            for group in optimizer.param_groups:
                group["lr"] = batch.lr
            optimizer.zero_grad(set_to_none=True)
            for micro in batch.micro:
                logits = model(input_ids=micro.inputs).logits[..., :vocab]  # (B, T, V)
                ce = next_token_ce(logits, micro.targets)
                kd_term = kd.of(logits, micro.labels) if batch.kd_weight > 0 else None
                loss = mixed_loss(ce, kd_term, batch.kd_weight) / len(batch.micro)
                loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            log.append({"step": batch.step + 1, "ce": ce.item(), "kd": None if kd_term is None else kd_term.item(),
                        "kd_weight": batch.kd_weight, "wait_s": batch.wait_s})
            print(json.dumps(log[-1]), flush=True)
        usage = batches.usage()
    model.save_pretrained(args.out)
    print(json.dumps({"summary": {"steps": len(log), "kd_steps": sum(r["kd"] is not None for r in log),
                                  "first_ce": log[0]["ce"], "last_ce": log[-1]["ce"], "service": usage}}))


if __name__ == "__main__":
    main()
