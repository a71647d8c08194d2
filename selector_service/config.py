"""Service settings, read from the environment (``SALT_`` prefix) or passed to ``create_app``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.device import ResolvedPrecision
from shared.errors import SaltError
from shared.labels import MAX_K


class Settings(BaseSettings):
    """Everything the selector service can be told. Environment: ``SALT_<NAME>`` (e.g. SALT_MODEL_PATH)."""

    model_config = SettingsConfigDict(env_prefix="SALT_", extra="ignore", frozen=True)

    model_path: str = "runs/slm/checkpoint"
    """Checkpoint folder of the SLM (model.safetensors, config.json, tokenizer.json)."""
    database_url: str = "sqlite:///salt_cache.sqlite"
    """SQLAlchemy URL of the cache: a SQLite file (default) or ``postgresql+psycopg://...``."""
    model_root: str | None = None
    """When set, ``model_path`` must lie inside this folder (after resolving ``..`` and links)."""
    api_key: SecretStr | None = None
    """When set, every request but ``/healthz`` (``/readyz``, ``/metrics`` and the docs included) must send
    it as ``Authorization: Bearer <key>`` or ``X-API-Key``."""
    cors_origins: str = ""
    """Comma-separated origins allowed by CORS (``*`` for any); empty: no CORS headers at all."""
    db_connect_deadline_s: float = Field(30.0, ge=0.0, le=3600.0)
    """How long start-up retries an unreachable cache database before exiting non-zero (0: start anyway
    and answer 503 until it is back)."""
    device: str = "auto"
    """``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``."""
    precision: ResolvedPrecision = "fp32"
    """Inference precision; bf16 only where the device supports it natively (checked at start-up)."""
    torch_threads: int = Field(0, ge=0, le=256)
    """Intra-op CPU threads for the forward pass (0: torch's default)."""
    max_batch_windows: int = Field(1024, ge=1, le=65536)
    """Most windows (or texts) in one request."""
    max_body_bytes: int = Field(32 << 20, ge=1024)
    """Largest request body accepted."""
    max_text_chars: int = Field(200_000, ge=1)
    """Longest text accepted in a request."""
    default_k: int = Field(32, ge=1, le=MAX_K)
    """k used when a request does not give one (and for labels stored alongside scores)."""
    max_k: int = Field(MAX_K, ge=1, le=MAX_K)
    """Largest k a request may ask for (never more than the vocabulary)."""
    max_batch_tokens: int = Field(8192, ge=1)
    """Most tokens in one forward pass (dynamic batching)."""
    head_chunk_tokens: int = Field(1024, ge=1)
    """Tokens per chunk of the output layer's full-vocabulary work, and on the CPU of the whole forward (small
    chunks stay in the CPU cache)."""
    cpu_postprocessing: Literal["auto", "c", "torch"] = "auto"
    """How logits on the CPU become labels and scores: ``c`` the C extension (start-up fails if it is not
    built), ``torch`` torch operations (several times slower), ``auto`` the extension when built. On an
    accelerator torch does it whatever this says."""
    max_wait_ms: float = Field(2.0, ge=0.0, le=1000.0)
    """Longest a computed request waits for others to join its forward pass."""
    retry_after_s: int = Field(2, ge=1, le=3600)
    """Retry-After sent with 503 answers (database unreachable)."""
    warmup: bool = True
    """Run one dummy forward at start-up so the first request is not slow."""
    job_chunk_windows: int = Field(256, ge=1, le=65536)
    """Windows per chunk of a scoring job (the unit replicas lease; progress is saved after each chunk)."""
    job_pause_s: float = Field(0.0, ge=0.0, le=60.0)
    """Pause of a scoring job between chunks (leaves the model to interactive requests)."""
    job_lease_s: float = Field(30.0, ge=0.5, le=3600.0)
    """Lease of a scoring job's chunk: renewed every third of it while a replica works on the chunk; a chunk
    whose lease ran out (its replica died) is taken by another replica."""
    job_poll_s: float = Field(2.0, ge=0.05, le=300.0)
    """How often a replica looks for open jobs of its model (started by any replica) to work on."""

    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]


def confined_model_path(settings: Settings) -> Path:
    """The resolved model path, refused (SaltError) when ``model_root`` is set and it lies outside."""
    path = Path(settings.model_path).resolve()
    if settings.model_root is None:
        return path
    root = Path(settings.model_root).resolve()
    if not path.is_relative_to(root):
        raise SaltError(f"model path {settings.model_path} is outside the allowed root {settings.model_root}",
                        "put the checkpoint under SALT_MODEL_ROOT or change SALT_MODEL_ROOT")
    return path
