"""Training loop: learning, evaluation arithmetic, exact resume, bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from shared.data import PackedDataset
from shared.errors import SaltError
from shared.model import GPT, GPTConfig
from trainer.config import TrainConfig
from trainer.recipe import train
from trainer.recipe.evaluate import evaluate_batch
from trainer.recipe.metrics import read_metrics
from trainer.sampling import batch_indices
from trainer.schedule import lr_at


def tiny_cfg(ds: PackedDataset, out: Path, **kw: object) -> TrainConfig:
    base = dict(data=str(ds.path), out=str(out), preset="llm-tiny", steps=12, batch_size=4, lr=3e-3,
                warmup_steps=2, eval_every=4, eval_windows=8, ckpt_every=6, device="cpu")
    base.update(kw)
    return TrainConfig.of(**base)  # type: ignore[arg-type]


def test_loss_decreases(tiny_dataset: PackedDataset, tmp_path: Path) -> None:
    summary = train(tiny_cfg(tiny_dataset, tmp_path / "run", steps=30, eval_every=10), progress=False)
    recs = read_metrics(tmp_path / "run")
    train_losses = [r["loss"] for r in recs if r["kind"] == "train"]
    evals = [r for r in recs if r["kind"] == "eval"]
    assert len(train_losses) == 30
    assert sum(train_losses[-5:]) / 5 < sum(train_losses[:5]) / 5 - 0.5
    assert [e["step"] for e in evals] == [0, 10, 20, 30]
    assert evals[-1]["val_loss"] < evals[0]["val_loss"]
    assert summary["val_loss"] == evals[-1]["val_loss"]
    # The initial loss of a fresh model is near log(vocab): nothing learned yet.
    assert abs(evals[0]["val_loss"] - math.log(tiny_dataset.vocab_size)) < 0.5


def test_eval_matches_hand_computation() -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=1, n_embd=8)).eval()
    windows = torch.tensor([[0, 1, 2, 3, 4], [4, 3, 2, 1, 0]])
    loss_sum, correct, tokens = evaluate_batch(model, windows)
    logits = model(windows[:, :-1])
    hand_loss, hand_correct = 0.0, 0
    for b in range(2):
        for t in range(4):
            row = logits[b, t].tolist()
            target = int(windows[b, t + 1])
            log_z = math.log(sum(math.exp(v) for v in row))
            hand_loss += log_z - row[target]
            hand_correct += int(max(range(5), key=lambda i: row[i]) == target)
    assert tokens == 8
    assert loss_sum == pytest.approx(hand_loss, rel=1e-5)
    assert correct == hand_correct


def _params(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoint" / "model.safetensors"))


def _comparable(run: Path) -> list[dict[str, object]]:
    keep = ("kind", "step", "loss", "lr", "grad_norm", "val_loss", "val_acc")
    return [{k: r[k] for k in keep if k in r} for r in read_metrics(run)]


def test_resume_is_exact(tiny_dataset: PackedDataset, tmp_path: Path) -> None:
    straight = tiny_cfg(tiny_dataset, tmp_path / "straight", grad_accum=2)
    train(straight, progress=False)

    # The same run crashes after step 7 (its last checkpoint is at step 6), then resumes.
    split = straight.with_(out=str(tmp_path / "split"))
    with pytest.raises(_Stop):
        _train_until(split, stop_after=7)
    assert json.loads((tmp_path / "split" / "checkpoint" / "config.json").read_text())["step"] == 6
    assert max(r["step"] for r in read_metrics(tmp_path / "split")) == 7
    train(split, resume=True, progress=False)

    a, b = _params(tmp_path / "straight"), _params(tmp_path / "split")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=1e-7)
    ma, mb = _comparable(tmp_path / "straight"), _comparable(tmp_path / "split")
    assert [(r["kind"], r["step"]) for r in ma] == [(r["kind"], r["step"]) for r in mb]
    assert _metrics_close(ma, mb)


class _Stop(Exception):
    pass


def _train_until(cfg: TrainConfig, stop_after: int) -> None:
    """Run ``train`` and abort (like a crash) when the metrics log reaches ``stop_after`` train steps."""
    import trainer.recipe.metrics as tt

    original = tt.MetricsLog.write

    def write(self: tt.MetricsLog, record: dict[str, object]) -> None:
        original(self, record)
        if record["kind"] == "train" and record["step"] == stop_after:
            raise _Stop

    tt.MetricsLog.write = write  # type: ignore[method-assign]
    try:
        train(cfg, progress=False)
    finally:
        tt.MetricsLog.write = original  # type: ignore[method-assign]


def _metrics_close(a: list[dict[str, object]], b: list[dict[str, object]]) -> bool:
    if len(a) != len(b):
        return False
    for ra, rb in zip(a, b, strict=True):
        if ra.keys() != rb.keys():
            return False
        for k in ra:
            va, vb = ra[k], rb[k]
            if isinstance(va, float) and isinstance(vb, float):
                if not math.isclose(va, vb, rel_tol=1e-5, abs_tol=1e-6):
                    return False
            elif va != vb:
                return False
    return True


def test_batch_order_is_a_pure_function_of_the_step() -> None:
    a = batch_indices(7, 1, n=50, batch_size=8, grad_accum=2, seed=3)
    b = batch_indices(7, 1, n=50, batch_size=8, grad_accum=2, seed=3)
    assert a.tolist() == b.tolist()
    assert batch_indices(7, 1, n=50, batch_size=8, grad_accum=2, seed=4).tolist() != a.tolist()
    # One epoch visits every window exactly once.
    epoch = [i for s in range(25) for i in batch_indices(s, 0, n=50, batch_size=2, grad_accum=1, seed=0)]
    assert sorted(epoch) == list(range(50))


def test_lr_schedule_boundaries() -> None:
    kw = dict(peak=1.0, warmup=10, total=110, min_ratio=0.1)
    assert lr_at(0, **kw) == pytest.approx(0.1)
    assert lr_at(9, **kw) == pytest.approx(1.0)
    assert lr_at(10, **kw) == pytest.approx(1.0)
    assert lr_at(109, **kw) == pytest.approx(0.1)
    assert 0.1 < lr_at(60, **kw) < 1.0


def test_seq_len_larger_than_context_is_refused(tiny_dataset: PackedDataset, tmp_path: Path) -> None:
    cfg = tiny_cfg(tiny_dataset, tmp_path / "run", block_size=tiny_dataset.seq_len - 1)
    with pytest.raises(SaltError, match="larger than the model's context"):
        train(cfg, progress=False)
    assert not (tmp_path / "run" / "checkpoint").exists()


def test_resume_refuses_changed_config(tiny_dataset: PackedDataset, tmp_path: Path) -> None:
    cfg = tiny_cfg(tiny_dataset, tmp_path / "run", steps=6)
    train(cfg, progress=False)
    with pytest.raises(SaltError, match=r"different configuration.*lr"):
        train(cfg.with_(lr=1e-2), resume=True, progress=False)


def test_non_empty_run_folder_needs_resume_or_overwrite(tiny_dataset: PackedDataset, tmp_path: Path) -> None:
    cfg = tiny_cfg(tiny_dataset, tmp_path / "run", steps=2)
    train(cfg, progress=False)
    with pytest.raises(SaltError, match="not empty"):
        train(cfg, progress=False)
    with pytest.raises(SaltError, match="no checkpoint"):
        train(cfg.with_(out=str(tmp_path / "fresh")), resume=True, progress=False)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("steps", 0, "steps must be"), ("preset", "huge", "unknown preset"), ("mode", "magic", "unknown mode"),
     ("warmup_steps", 999, "warmup_steps"), ("precision", "fp8", "precision")],
)
def test_config_validation(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig.of(data="d", out="o", **{field: value})  # type: ignore[arg-type]
