"""GET /v1/model: what the service runs."""

from __future__ import annotations

from fastapi import APIRouter

from selector_service.deps import SelectorDep, SettingsDep
from selector_service.schemas import LabelDefaults, ModelInfo
from shared.softlabels import WIRE_FORMAT, WIRE_MEDIA_TYPE

router = APIRouter(prefix="/v1", tags=["model"])


@router.get("/model", response_model=ModelInfo)
async def model_info(selector: SelectorDep, settings: SettingsDep) -> ModelInfo:
    """Fingerprint, preset, vocabulary, context, parameter count and label defaults of the SLM."""
    e = selector.engine
    return ModelInfo(
        fingerprint=e.fingerprint, tokenizer_hash=str(e.checkpoint_info.get("tokenizer_hash", "")),
        preset=e.config.preset, vocab_size=e.vocab_size, block_size=e.block_size,
        num_params=e.num_params, precision=e.precision, device=str(e.device),
        label_defaults=LabelDefaults(k=settings.default_k, max_k=min(settings.max_k, e.vocab_size), temperature=1.0),
        wire_format=WIRE_FORMAT, wire_media_type=WIRE_MEDIA_TYPE,
    )
