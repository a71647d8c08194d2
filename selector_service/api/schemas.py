"""Request and response bodies, every field bounded."""

from __future__ import annotations

import dataclasses
import typing
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from shared.labels import MAX_K, WindowScore
from shared.lm import Kind
from shared.sampling import DEFAULT_DRAWS, MAX_DRAWS, LabelKind

MAX_WINDOWS = 65536  # hard schema bound; the configured limit (SALT_MAX_BATCH_WINDOWS) is checked after
MAX_WINDOW_TOKENS = 1 << 16
MAX_TEXT_CHARS = 1 << 22

TokenId = Annotated[int, Field(ge=0, lt=1 << 31)]
TokenIds = Annotated[list[TokenId], Field(max_length=MAX_WINDOW_TOKENS)]
Text = Annotated[str, Field(max_length=MAX_TEXT_CHARS)]


class WindowsRequest(BaseModel):
    """A batch of windows: token id lists (``L + 1`` ids: inputs and shifted targets) or texts."""

    model_config = ConfigDict(extra="forbid")

    windows: list[TokenIds] | None = Field(
        None, max_length=MAX_WINDOWS, description="Windows of L+1 token ids (2 <= L+1 <= context+1)."
    )
    texts: list[Text] | None = Field(
        None, max_length=MAX_WINDOWS, description="Texts, tokenized by the service (no special tokens)."
    )


class SoftLabelsRequest(WindowsRequest):
    kind: LabelKind = Field("topk", description="topk: top-k ids, log-probs and tail; sample: `draws` seeded "
                                                "draws per position as unique ids and counts.")
    k: int | None = Field(None, ge=1, le=MAX_K, description="Ids kept per position (default: SALT_DEFAULT_K); "
                                                           "top-k only.")
    draws: int | None = Field(None, ge=1, le=MAX_DRAWS, description=f"Draws per position (default: {DEFAULT_DRAWS}); "
                                                                   "sample only.")
    temperature: float = Field(1.0, gt=0.0, le=100.0, description="Softmax temperature of the labels.")


class WindowLabels(BaseModel):
    hash: str
    ids: list[list[int]] = Field(description="(L, k) top-k ids, most probable first.")
    logprobs: list[list[float]] = Field(description="(L, k) log-probs (float16 values).")
    tail: list[float] = Field(description="(L,) log of the mass outside the top-k (-1e4: none).")


class SoftLabelsResponse(BaseModel):
    model: str
    precision: str
    kind: Literal["topk"] = "topk"
    k: int
    temperature: float
    windows: list[WindowLabels]


class WindowSampledLabels(BaseModel):
    hash: str
    ids: list[list[int]] = Field(description="(L, W) unique drawn ids, most drawn first (0 where padding).")
    counts: list[list[int]] = Field(description="(L, W) draws of each id (0: padding); each row sums to draws.")


class SampledLabelsResponse(BaseModel):
    model: str
    precision: str
    kind: Literal["sample"] = "sample"
    draws: int
    temperature: float
    windows: list[WindowSampledLabels]


def _score_fields() -> dict[str, Any]:
    """``WindowScore``'s fields as a JSON body's: the embedding as a list, salt_ds documented."""
    hints = typing.get_type_hints(WindowScore)
    out: dict[str, Any] = {f.name: (hints[f.name], ...) for f in dataclasses.fields(WindowScore)}
    out["salt_ds"] = (float | None, Field(description="Null: no position's true token is in the top-10 "
                                                      "(not selectable)."))
    out["embedding"] = (list[float], ...)
    return out


WindowScoreOut = create_model("WindowScoreOut", **_score_fields())
"""One window's scores, as ``shared.labels.WindowScore`` holds them."""


class ScoresResponse(BaseModel):
    model: str
    precision: str
    windows: list[WindowScoreOut]  # type: ignore[valid-type]


class LabelDefaults(BaseModel):
    kinds: list[LabelKind] = Field(description="Label kinds served (`kind` of a soft-label request).")
    k: int
    max_k: int
    draws: int = Field(description="Draws per position of a `sample` request without `draws`.")
    max_draws: int
    temperature: float


class ModelInfo(BaseModel):
    fingerprint: str
    tokenizer_hash: str = Field(description="shared.tokenizer.tokenizer_hash of the served tokenizer.")
    kind: Kind = Field(description="gpt: a checkpoint written by `salt train`; hf: a Hugging Face causal LM.")
    preset: str = Field(description="The GPT preset, or the Hugging Face model type (llama, qwen2, ...).")
    vocab_size: int = Field(description="The tokenizer's ids: every label and score is over these.")
    output_rows: int = Field(description="Rows of the output layer; rows past vocab_size (padding) are never served.")
    eot_id: int = Field(description="The end-of-text id documents are joined with.")
    block_size: int
    num_params: int
    precision: str
    device: str
    label_defaults: LabelDefaults
    wire_format: str
    wire_media_type: str
