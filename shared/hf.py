"""Hugging Face causal LMs from local folders, with the project's model interface.

A Hugging Face model folder holds ``config.json`` (with ``model_type``), safetensors weights (one file or
shards with an index) and the fast tokenizer's files (``tokenizer.json``, ``tokenizer_config.json``).
Nothing is downloaded: every load is ``local_files_only``. Weights load from safetensors only (a folder
with pickled ``.bin`` weights alone is refused). ``transformers`` is imported here alone, so the
project's own GPT never needs it.

Shapes: B = batch, T = positions, C = hidden width, V = the tokenizer's vocabulary (the model's output
layer may have more rows, padding, which are cut off), R = the output layer's rows.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from tokenizers import Tokenizer

from shared.errors import SaltError
from shared.hashing import bytes_hash, file_hash
from shared.tokenizer import load_tokenizer, tokenizer_hash

CONFIG = "config.json"
TOKENIZER_CONFIG = "tokenizer_config.json"


def is_hf_folder(path: str | Path) -> bool:
    """Whether ``path`` is (or names the config.json of) a Hugging Face model: a config with ``model_type``."""
    config = _config_path(Path(path))
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "model_type" in data


def _config_path(path: Path) -> Path:
    return path if path.is_file() else path / CONFIG


def _transformers() -> Any:
    """``transformers``, quiet and offline (no hub calls, no progress bars on every load)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return transformers


def weight_files(folder: Path) -> list[Path]:
    """The folder's safetensors weights (sorted), refusing a folder without them."""
    files = sorted(folder.glob("*.safetensors"))
    if files:
        return files
    if list(folder.glob("*.bin")) or list(folder.glob("*.pt")):
        raise SaltError(f"{folder} holds pickled weights only (.bin), which are never loaded here",
                        "convert them to safetensors (save_pretrained(..., safe_serialization=True))")
    raise SaltError(f"{folder} has no model weights (*.safetensors)", "pass a folder written by save_pretrained")


def weights_bytes(folder: Path) -> int:
    """Bytes of the weights as stored (from the safetensors headers, without loading them)."""
    total = 0
    for f in weight_files(folder):
        with f.open("rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(n))
        total += sum(v["data_offsets"][1] - v["data_offsets"][0] for k, v in header.items() if k != "__metadata__")
    return total


def hf_config(path: str | Path) -> Any:
    """The ``transformers`` config of a model folder or config.json, refusing one that is not a causal LM."""
    tf = _transformers()
    p = Path(path)
    if not _config_path(p).is_file():
        raise SaltError(f"{p} is not a model: no {CONFIG}", "pass a Hugging Face model folder or its config.json")
    try:
        config = tf.AutoConfig.from_pretrained(str(p), local_files_only=True)
    except (OSError, ValueError, KeyError) as e:
        raise SaltError(f"{p}: cannot read {CONFIG} as a Hugging Face config ({str(e).splitlines()[0][:200]})",
                        "pass a Hugging Face model folder or its config.json") from e
    if type(config) not in tf.MODEL_FOR_CAUSAL_LM_MAPPING:
        raise SaltError(f"{p}: model type {config.model_type!r} is not a causal language model",
                        "pass a decoder-only (causal LM) model such as Llama, Qwen2, GPT-2 or GPT-NeoX")
    return config


def hf_tokenizer(folder: str | Path) -> tuple[Tokenizer, int]:
    """A model folder's fast tokenizer and its end-of-text id (the ``eos_token`` of tokenizer_config.json)."""
    folder = Path(folder)
    if not (folder / "tokenizer.json").is_file():
        raise SaltError(f"{folder} has no tokenizer.json (the fast tokenizer's file)",
                        "save the tokenizer beside the model (tokenizer.save_pretrained) or pass a folder that has it")
    tok = load_tokenizer(folder / "tokenizer.json")
    return tok, eos_id(folder, tok)


def eos_id(folder: Path, tok: Tokenizer) -> int:
    """The model's end-of-text id: ``eos_token`` of tokenizer_config.json, else ``eos_token_id`` of config.json."""
    name: Any = None
    cfg = folder / TOKENIZER_CONFIG
    if cfg.is_file():
        name = json.loads(cfg.read_text(encoding="utf-8")).get("eos_token")
        name = name.get("content") if isinstance(name, dict) else name
    if isinstance(name, str) and tok.token_to_id(name) is not None:
        return int(tok.token_to_id(name))
    eos = json.loads((folder / CONFIG).read_text(encoding="utf-8")).get("eos_token_id")
    eos = eos[0] if isinstance(eos, list) and eos else eos
    if isinstance(eos, int) and 0 <= eos < tok.get_vocab_size():
        return eos
    raise SaltError(f"{folder}: the tokenizer names no end-of-text token", f"set eos_token in {TOKENIZER_CONFIG}")


def hf_fingerprint(folder: str | Path) -> str:
    """Identity of a model folder: its weight files, its config and its tokenizer."""
    folder = Path(folder)
    config = json.dumps(json.loads((folder / CONFIG).read_text(encoding="utf-8")), sort_keys=True)
    tok, _ = hf_tokenizer(folder)
    weights = [file_hash(f) for f in weight_files(folder)]
    return bytes_hash("hf-model", config, tokenizer_hash(tok), *weights)


def check_memory(folder: Path, dtype: torch.dtype, device: torch.device) -> None:
    """Refuse a model whose weights alone would not fit in the memory free on ``device``."""
    stored = weights_bytes(folder)
    dtypes = {v for f in weight_files(folder) for v in _stored_dtypes(f)}
    itemsize = max((torch.finfo(d).bits // 8 for d in dtypes), default=4)
    need = stored * torch.finfo(dtype).bits // 8 // max(1, itemsize)
    free = _free_bytes(device)
    if free is not None and need > free:
        raise SaltError(f"{folder}: the model needs about {need / 2**30:.1f} GiB in {dtype} but {device} has "
                        f"{free / 2**30:.1f} GiB free", "use a smaller model, bf16, or a device with more memory")


def _stored_dtypes(f: Path) -> set[torch.dtype]:
    names = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}
    with f.open("rb") as fh:
        header = json.loads(fh.read(int.from_bytes(fh.read(8), "little")))
    return {names[v["dtype"]] for k, v in header.items() if k != "__metadata__" and v["dtype"] in names}


def _free_bytes(device: torch.device) -> int | None:
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class HFCausalLM(nn.Module):
    """A ``transformers`` causal LM with the project's model interface, its output cut to the tokenizer.

    ``forward(idx)`` gives (B, T, V) logits, ``hidden(idx)`` the (B, T, C) final hidden states and
    ``head(hidden)`` the logits from them; output rows past the tokenizer's V (padding) are never computed.
    """

    def __init__(self, model: nn.Module, vocab_size: int) -> None:
        super().__init__()
        self.model = model
        rows = model.get_output_embeddings().weight.shape[0]
        if vocab_size > rows:
            raise SaltError(f"the model's output layer has {rows} rows, fewer than the tokenizer's {vocab_size} ids",
                            "use the model's own tokenizer")
        self.vocab_size = vocab_size
        self.output_rows = rows
        config = model.config
        self.block_size = int(getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", 0))
        self._softcap = getattr(config, "final_logit_softcapping", None)
        self._scale = getattr(config, "logit_scale", None)

    @property
    def config(self) -> Any:
        return self.model.config

    def hidden(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, T) int64 ids -> (B, T, C) final (normalised) hidden states."""
        return self.model.base_model(input_ids=idx, use_cache=False).last_hidden_state

    def head(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, T, C) hidden states -> (B, T, V) logits over the tokenizer's ids only."""
        out = self.model.get_output_embeddings()
        bias = out.bias[: self.vocab_size] if getattr(out, "bias", None) is not None else None
        logits = F.linear(hidden, out.weight[: self.vocab_size], bias)  # (B, T, V)
        if self._scale is not None:
            logits = logits * self._scale
        if self._softcap is not None:
            logits = torch.tanh(logits / self._softcap) * self._softcap
        return logits

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """(B, T) int64 ids -> (B, T, V) next-token logits."""
        return self.head(self.hidden(idx))

    def num_params(self) -> int:
        """Parameters, each shared tensor counted once."""
        return sum(p.numel() for p in self.model.parameters())

    @property
    def block_modules(self) -> list[nn.Module]:
        """The transformer blocks (the units FSDP shards one by one)."""
        names = set(getattr(self.model, "_no_split_modules", None) or ())
        return [m for m in self.model.modules() if type(m).__name__ in names]


def load_hf(folder: str | Path, *, device: torch.device, dtype: torch.dtype = torch.float32) -> tuple[
        HFCausalLM, Tokenizer, int]:
    """Load a model folder: the model (eval mode, on ``device``), its tokenizer and end-of-text id.

    Every failure is one ``SaltError`` naming the path and the fix: not a model, not a causal LM, no
    tokenizer, pickled or missing weights, weights that do not match the config, too large for the memory.
    """
    folder = Path(folder)
    config = hf_config(folder)
    tok, eot = hf_tokenizer(folder)
    check_memory(folder, dtype, device)
    tf = _transformers()
    try:
        model = tf.AutoModelForCausalLM.from_pretrained(str(folder), config=config, local_files_only=True,
                                                        dtype=dtype, use_safetensors=True)
    except (OSError, ValueError, RuntimeError) as e:
        raise SaltError(f"{folder}: the weights do not match {CONFIG} ({str(e).splitlines()[0][:200]})",
                        "re-save the model with save_pretrained") from e
    return HFCausalLM(model, tok.get_vocab_size()).to(device).eval(), tok, eot


def new_hf(config_path: str | Path, vocab_size: int) -> HFCausalLM:
    """A randomly initialised model of a config (seed torch first for a repeatable one)."""
    config = hf_config(config_path)
    tf = _transformers()
    return HFCausalLM(tf.AutoModelForCausalLM.from_config(config), vocab_size)


def save_hf(folder: str | Path, lm: HFCausalLM, tok: Tokenizer, eot: int,
            state: dict[str, torch.Tensor] | None = None) -> None:
    """Write a model folder that ``transformers`` (and the selector service) load as it is.

    Args:
        state: the full parameters of a sharded ``lm`` (keys as ``lm.state_dict()`` names them); default its own.
    """
    tf = _transformers()
    folder = Path(folder)
    inner = None if state is None else {k.removeprefix("model."): v for k, v in state.items()}
    lm.model.save_pretrained(str(folder), safe_serialization=True, state_dict=inner)
    fast = tf.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=tok.id_to_token(eot))
    fast.save_pretrained(str(folder))
    # The tokenizer file exactly as the dataset has it, so its hash (the vocabulary contract) is the dataset's.
    (folder / "tokenizer.json").write_text(tok.to_str(), encoding="utf-8")
