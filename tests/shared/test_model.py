"""GPT model: preset sizes, shapes, context limit and config validation."""

from __future__ import annotations

import pytest
import torch

from shared.model import GPT, PRESETS, GPTConfig, preset_summary


def test_preset_parameter_counts_are_positive_and_ordered() -> None:
    rows = {name: (total, non_emb) for name, total, non_emb in preset_summary(vocab_size=8192, block_size=128)}
    assert set(rows) == set(PRESETS)
    assert all(total > non_emb > 0 for total, non_emb in rows.values())
    assert rows["slm-tiny"][0] < rows["slm"][0] < rows["llm"][0]
    assert rows["slm-tiny"][1] < rows["slm"][1] < rows["llm"][1]


def test_parameter_count_matches_the_architecture() -> None:
    V, T, C, L = 300, 32, 64, 2
    model = GPT(GPTConfig.from_preset("slm-tiny", vocab_size=V, block_size=T))
    per_block = 2 * C + (3 * C * C + C * C) + (4 * C * C + 4 * C * C)  # 2 LayerNorms, attention, MLP; no biases
    expected = V * C + T * C + L * per_block + C  # tied lm_head counted once, final LayerNorm
    assert model.num_params() == expected
    assert model.num_params(non_embedding=True) == expected - V * C - T * C
    assert model.lm_head.weight is model.wte.weight


def test_forward_shape() -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_preset("slm-tiny", vocab_size=300, block_size=16)).eval()
    idx = torch.randint(0, 300, (3, 16))
    with torch.no_grad():
        logits = model(idx)
        assert logits.shape == (3, 16, 300)
        assert model.hidden(idx).shape == (3, 16, 64)
        assert torch.isfinite(logits).all()
        # Causal: a change at the last position leaves earlier logits untouched.
        idx2 = idx.clone()
        idx2[:, -1] = (idx2[:, -1] + 1) % 300
        changed = model(idx2)
    torch.testing.assert_close(changed[:, :-1], logits[:, :-1])
    assert not torch.allclose(changed[:, -1], logits[:, -1])


def test_sequence_longer_than_block_size_is_refused() -> None:
    model = GPT(GPTConfig.from_preset("slm-tiny", vocab_size=300, block_size=8))
    model(torch.zeros(1, 8, dtype=torch.long))  # the limit itself is fine
    with pytest.raises(ValueError, match="sequence length 9 exceeds the model's context 8"):
        model(torch.zeros(1, 9, dtype=torch.long))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_embd": 100, "n_head": 3}, r"n_embd \(100\) must be divisible by n_head \(3\)"),
        ({"vocab_size": 0}, "vocab_size must be positive"),
        ({"block_size": -1}, "block_size must be positive"),
        ({"n_layer": 0}, "n_layer must be positive"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
    ],
)
def test_config_validation(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        GPTConfig(**kwargs)  # type: ignore[arg-type]


def test_config_presets_and_dict_round_trip() -> None:
    cfg = GPTConfig.from_preset("slm", vocab_size=300, block_size=32)
    assert (cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.preset) == (3, 4, 192, "slm")
    assert GPTConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown model preset 'huge'"):
        GPTConfig.from_preset("huge", vocab_size=300, block_size=32)
    with pytest.raises(ValueError, match="unknown GPTConfig fields"):
        GPTConfig.from_dict({**cfg.to_dict(), "n_experts": 8})
