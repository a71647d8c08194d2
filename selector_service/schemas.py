"""Request and response bodies, every field bounded."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

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
    k: int | None = Field(None, ge=1, le=256, description="Ids kept per position (default: SALT_DEFAULT_K).")
    temperature: float = Field(1.0, gt=0.0, le=100.0, description="Softmax temperature of the labels.")


class WindowLabels(BaseModel):
    hash: str
    ids: list[list[int]] = Field(description="(L, k) top-k ids, most probable first.")
    logprobs: list[list[float]] = Field(description="(L, k) log-probs (float16 values).")
    tail: list[float] = Field(description="(L,) log of the mass outside the top-k (-1e4: none).")


class SoftLabelsResponse(BaseModel):
    model: str
    precision: str
    k: int
    temperature: float
    windows: list[WindowLabels]


class WindowScoreOut(BaseModel):
    hash: str
    n_tokens: int
    mean_loss: float
    median_loss: float
    top1_acc: float
    mean_entropy: float
    salt_ds: float | None = Field(description="Null: no position's true token is in the top-10 (not selectable).")
    embedding: list[float]


class ScoresResponse(BaseModel):
    model: str
    precision: str
    windows: list[WindowScoreOut]


class LabelDefaults(BaseModel):
    k: int
    max_k: int
    temperature: float


class ModelInfo(BaseModel):
    fingerprint: str
    tokenizer_hash: str = Field(description="shared.tokenizer.tokenizer_hash of the served tokenizer.")
    preset: str
    vocab_size: int
    block_size: int
    num_params: int
    precision: str
    device: str
    label_defaults: LabelDefaults
    wire_format: str
    wire_media_type: str
