"""Tiny random-weight Hugging Face models for tests, built from ``transformers``' own config classes.

Nothing is downloaded: a config is made in the test, a model initialised from it with a fixed seed, and
``save_pretrained`` writes the folder (with the test dataset's tokenizer).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from shared.data import PackedDataset
from shared.hf import new_hf, save_hf


def tiny_config(arch: str, vocab_size: int, *, context: int = 64, padding_rows: int = 0) -> Any:
    """A two-layer config of ``arch`` (llama, gpt2, neox or qwen2); ``padding_rows`` widen its output layer."""
    import transformers as tf

    v = vocab_size + padding_rows
    if arch == "llama":
        return tf.LlamaConfig(vocab_size=v, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=context)
    if arch == "gpt2":
        return tf.GPT2Config(vocab_size=v, n_embd=32, n_layer=2, n_head=4, n_positions=context,
                             bos_token_id=0, eos_token_id=0)
    if arch == "neox":
        return tf.GPTNeoXConfig(vocab_size=v, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                num_attention_heads=4, max_position_embeddings=context)
    if arch == "qwen2":
        return tf.Qwen2Config(vocab_size=v, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=context,
                              tie_word_embeddings=True)
    raise ValueError(f"unknown architecture {arch!r}")


def config_file(folder: Path, arch: str, ds: PackedDataset, **kw: Any) -> Path:
    """``folder/config.json`` of a tiny ``arch`` model for the dataset's vocabulary."""
    tiny_config(arch, ds.vocab_size, **kw).save_pretrained(str(folder))
    return folder / "config.json"


def model_folder(folder: Path, arch: str, ds: PackedDataset, *, seed: int = 0, **kw: Any) -> Path:
    """A random-weight ``arch`` model with the dataset's tokenizer, saved as a Hugging Face folder."""
    torch.manual_seed(seed)
    cfg = config_file(folder / "config", arch, ds, **kw)
    save_hf(folder, new_hf(cfg, ds.vocab_size), ds.tokenizer(), ds.eot_id)
    return folder


def transformers_logits(folder: Path, ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """(B, T, V) logits of a saved folder as ``transformers`` itself computes them, cut to the tokenizer."""
    import transformers as tf

    model = tf.AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True).eval()
    with torch.no_grad():
        return model(input_ids=ids).logits[..., :vocab_size].float()
