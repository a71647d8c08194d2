"""Checkpoints: exact round trip, fingerprints that follow the weights, and clear errors on damage."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from shared.checkpoint import load_model, model_fingerprint, read_config, save_model
from shared.errors import SaltError
from shared.tokenizer import tokenizer_hash, train_tokenizer


@pytest.fixture
def ckpt(tiny_checkpoint: Path, tmp_path: Path) -> Path:
    """A private copy of the session checkpoint, free to damage."""
    return Path(shutil.copytree(tiny_checkpoint, tmp_path / "ckpt"))


def test_round_trip_gives_identical_logits_and_fingerprint(tiny_checkpoint: Path, tmp_path: Path) -> None:
    model, tok, config = load_model(tiny_checkpoint)
    assert not model.training
    assert config["tokenizer_hash"] == tokenizer_hash(tok)
    assert config["num_params"] == model.num_params()
    idx = torch.randint(0, tok.get_vocab_size(), (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(idx)

    save_model(tmp_path / "again", model, tok)
    reloaded, tok2, _ = load_model(tmp_path / "again")
    assert tokenizer_hash(tok2) == tokenizer_hash(tok)
    with torch.no_grad():
        assert torch.equal(reloaded(idx), logits)
    for (name, a), (name_b, b) in zip(model.state_dict().items(), reloaded.state_dict().items(), strict=True):
        assert name == name_b and torch.equal(a, b)
    assert reloaded.lm_head.weight is reloaded.wte.weight  # still tied after loading
    assert model_fingerprint(tmp_path / "again") == model_fingerprint(tiny_checkpoint)
    assert len(model_fingerprint(tiny_checkpoint)) == 32


def test_changing_one_weight_changes_fingerprint(tiny_checkpoint: Path, tmp_path: Path) -> None:
    model, tok, _ = load_model(tiny_checkpoint)
    with torch.no_grad():
        model.blocks[0].mlp.c_fc.weight[0, 0] += 1e-3
    save_model(tmp_path / "changed", model, tok)
    assert model_fingerprint(tmp_path / "changed") != model_fingerprint(tiny_checkpoint)


def test_other_tokenizer_changes_fingerprint(tiny_checkpoint: Path, tmp_path: Path) -> None:
    model, tok, _ = load_model(tiny_checkpoint)
    other = train_tokenizer(["a completely different corpus 0123456789"] * 4, vocab_size=tok.get_vocab_size())
    assert tokenizer_hash(other) != tokenizer_hash(tok)
    save_model(tmp_path / "other", model, other)
    assert model_fingerprint(tmp_path / "other") != model_fingerprint(tiny_checkpoint)


@pytest.mark.parametrize("missing", ["model.safetensors", "config.json", "tokenizer.json"])
def test_missing_file_is_named(ckpt: Path, missing: str) -> None:
    (ckpt / missing).unlink()
    for fn in (load_model, model_fingerprint, read_config):
        with pytest.raises(SaltError, match=f"checkpoint {ckpt} is missing {missing}"):
            fn(ckpt)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(SaltError, match="checkpoint folder not found"):
        load_model(tmp_path / "nope")


@pytest.mark.parametrize("keep", [0, 7, 100, -64])
def test_truncated_weights_are_refused(ckpt: Path, keep: int) -> None:
    data = (ckpt / "model.safetensors").read_bytes()
    (ckpt / "model.safetensors").write_bytes(data[:keep])
    with pytest.raises(SaltError, match=r"has a corrupt model\.safetensors"):
        load_model(ckpt)


@pytest.mark.parametrize(
    "content",
    [
        b"{garbage",
        b"\xff\xfe\x00",
        b"[1, 2]",
        b'{"format": "salt-ckpt-v1"}',
        b'{"model": {"n_embd": 100, "n_head": 3}}',
    ],
)
def test_garbage_config_is_refused(ckpt: Path, content: bytes) -> None:
    (ckpt / "config.json").write_bytes(content)
    for fn in (load_model, model_fingerprint):
        with pytest.raises(SaltError, match=r"has a corrupt config\.json"):
            fn(ckpt)


def test_corrupt_tokenizer_is_refused(ckpt: Path) -> None:
    (ckpt / "tokenizer.json").write_text("{not a tokenizer", encoding="utf-8")
    with pytest.raises(SaltError, match=r"not a valid tokenizer\.json"):
        load_model(ckpt)


def test_swapped_tokenizer_is_refused(ckpt: Path) -> None:
    train_tokenizer(["other text"] * 3, vocab_size=270).save(str(ckpt / "tokenizer.json"))
    with pytest.raises(SaltError, match=r"tokenizer\.json does not match config\.json"):
        load_model(ckpt)


def test_weights_that_do_not_fit_the_config_are_refused(ckpt: Path) -> None:
    config = json.loads((ckpt / "config.json").read_text(encoding="utf-8"))
    config["model"]["n_layer"] += 1
    (ckpt / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(SaltError, match=r"weights do not match config\.json"):
        load_model(ckpt)


def test_wrong_format_is_refused(ckpt: Path) -> None:
    config = json.loads((ckpt / "config.json").read_text(encoding="utf-8"))
    config["format"] = "something-else"
    (ckpt / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(SaltError, match="has format 'something-else'"):
        read_config(ckpt)
