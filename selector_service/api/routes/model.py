"""GET /v1/model: what the service runs."""

from __future__ import annotations

from fastapi import APIRouter

from selector_service.api.deps import SettingsDep, SLMDep
from selector_service.api.schemas import LabelDefaults, ModelInfo
from shared.sampling import DEFAULT_DRAWS, LABEL_KINDS, MAX_DRAWS
from shared.wire import WIRE_FORMAT, WIRE_MEDIA_TYPE

router = APIRouter(prefix="/v1", tags=["model"])


@router.get("/model", response_model=ModelInfo)
async def model_info(slm: SLMDep, settings: SettingsDep) -> ModelInfo:
    """Fingerprint, kind, preset, vocabulary, context, parameter count and label defaults of the SLM."""
    return ModelInfo(
        fingerprint=slm.fingerprint, tokenizer_hash=slm.tokenizer_hash,
        kind=slm.kind, preset=slm.name, vocab_size=slm.vocab_size, output_rows=slm.output_rows,
        eot_id=slm.eot_id, block_size=slm.block_size,
        num_params=slm.num_params, precision=slm.precision, device=str(slm.device),
        label_defaults=LabelDefaults(kinds=list(LABEL_KINDS), k=settings.default_k,
                                     max_k=min(settings.max_k, slm.vocab_size), draws=DEFAULT_DRAWS,
                                     max_draws=MAX_DRAWS, temperature=1.0),
        wire_format=WIRE_FORMAT, wire_media_type=WIRE_MEDIA_TYPE,
    )
