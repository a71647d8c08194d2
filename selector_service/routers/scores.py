"""POST /v1/scores: learnability figures and an embedding per window."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from selector_service.deps import SelectorDep, SettingsDep, windows_of
from selector_service.schemas import ScoresResponse, WindowsRequest

router = APIRouter(prefix="/v1", tags=["scores"])



@router.post("/scores", response_model=ScoresResponse)
async def scores(body: WindowsRequest, selector: SelectorDep, settings: SettingsDep) -> JSONResponse:
    """Token count, mean and median loss, top-1 accuracy, mean entropy, SALT_DS score and embedding."""
    windows = windows_of(body, selector, settings)
    rows = await selector.scores(windows)
    out = [
        {"hash": r.hash, "n_tokens": r.n_tokens, "mean_loss": r.mean_loss, "median_loss": r.median_loss,
         "top1_acc": r.top1_acc, "mean_entropy": r.mean_entropy, "salt_ds": r.salt_ds,
         "embedding": r.embedding.astype("float32").tolist()}
        for r in rows
    ]
    engine = selector.engine
    return JSONResponse({"model": engine.fingerprint, "precision": engine.precision, "windows": out})
