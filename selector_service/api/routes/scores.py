"""POST /v1/scores: learnability figures and an embedding per window."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from selector_service.api.deps import LabelCacheDep, SettingsDep
from selector_service.api.schemas import ScoresResponse, WindowsRequest
from selector_service.domain.windows import request_windows

router = APIRouter(prefix="/v1", tags=["scores"])


@router.post("/scores", response_model=ScoresResponse)
async def scores(body: WindowsRequest, cache: LabelCacheDep, settings: SettingsDep) -> JSONResponse:
    """Token count, mean and median loss, top-1 accuracy, mean entropy, SALT_DS score and embedding."""
    slm = cache.slm
    rows = await cache.scores(request_windows(slm, settings, windows=body.windows, texts=body.texts))
    out = [
        {"hash": r.hash, "n_tokens": r.n_tokens, "mean_loss": r.mean_loss, "median_loss": r.median_loss,
         "top1_acc": r.top1_acc, "mean_entropy": r.mean_entropy, "salt_ds": r.salt_ds,
         "embedding": r.embedding.astype("float32").tolist()}
        for r in rows
    ]
    return JSONResponse({"model": slm.fingerprint, "precision": slm.precision, "windows": out})
