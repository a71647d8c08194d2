"""Request and response bodies of pools, scoring jobs and selections, every field bounded."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from selector_service.api.schemas import MAX_WINDOWS, TokenIds
from selector_service.domain.methods import Diversity, Method

Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{1,64}$")]
Hash = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
MAX_INDEX = (1 << 31) - 1
Role = Annotated[str, Field(pattern=r"^[a-z_]{1,32}$")]
ModelName = Annotated[str, Field(pattern=r"^[0-9a-f]{1,64}(:[a-z0-9]{1,16})?$")]


class PoolCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$", description="Pool name, unique per dataset.")
    dataset_fingerprint: Hex
    tokenizer_hash: Hex = Field(description="Must equal the served model's tokenizer hash.")
    window_len: int = Field(ge=2, le=1 << 16, description="L + 1 ids per window.")


class ModelScored(BaseModel):
    model_fingerprint: str
    precision: str
    scored: int = Field(description="Windows of the pool with a score row for this model.")


class PoolOut(BaseModel):
    id: str
    name: str
    dataset_fingerprint: str
    tokenizer_hash: str
    window_len: int
    count: int = Field(description="Windows in the pool (sealed), or uploaded so far.")
    uploaded: int
    resume_from: int = Field(description="Indices 0..resume_from-1 are all uploaded.")
    sealed: bool
    scored: int = Field(description="Windows with a score row for the served model.")
    scored_by: list[ModelScored] = Field(
        description="Windows scored by each model: the served one and every one that started a scoring job on "
                    "the pool (services sharing the database), by fingerprint then precision.")


class WindowsUpload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: int = Field(ge=0, le=MAX_INDEX, description="Pool index of the first window.")
    hashes: list[Hash] = Field(max_length=MAX_WINDOWS)
    windows: list[TokenIds] = Field(max_length=MAX_WINDOWS)


class UploadOut(BaseModel):
    pool_id: str
    start: int
    received: int


class SealRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    count: int = Field(ge=1, le=MAX_INDEX)


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pool_id: Hash


class JobOut(BaseModel):
    id: str
    pool_id: str
    model_fingerprint: str
    status: Literal["queued", "running", "done", "failed"]
    done: int
    total: int
    error: str | None


class SelectionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pool_id: Hash
    method: Method
    count: int | None = Field(None, ge=1, le=MAX_INDEX)
    fraction: float | None = Field(None, gt=0.0, le=1.0)
    diversity: Diversity = "none"
    seed: int = Field(0, ge=0, le=MAX_INDEX)
    band_lo: float = Field(0.3, ge=0.0, le=1.0)
    band_hi: float = Field(0.9, ge=0.0, le=1.0)
    n_clusters: int | None = Field(None, ge=1, le=4096, description="k-means clusters (default min(16, candidates)).")
    dedup_threshold: float = Field(0.95, ge=-1.0, le=1.0)
    models: dict[Role, ModelName] | None = Field(
        None, max_length=2,
        description="Two-model methods only: a model for each of the method's roles (reducible_loss: learner, "
                    "reference; difference: teacher, reference; conditional: prior, conditional), by fingerprint "
                    "(or fingerprint:precision). Each must have scored every window of the pool.")


class SelectionOut(BaseModel):
    id: str
    pool_id: str
    method: str
    count: int
    params: dict[str, int | float | str | None]
    models: dict[str, str] = Field(description="Two-model methods: the model key (fingerprint:precision) of each "
                                               "role; empty for the others (the model below scored the pool).")
    model_fingerprint: str
    precision: str
    dataset_fingerprint: str
    tokenizer_hash: str
    created_at: float


class SelectionFull(SelectionOut):
    indices: list[int] = Field(description="Pool indices, ascending.")
    hashes: list[str] = Field(description="Window hashes, in the order of indices.")
