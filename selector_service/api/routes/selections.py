"""Selections: a budget of a fully scored pool's windows, chosen by a method and a diversity rule, stored."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from fastapi import Path as PathParam
from starlette.concurrency import run_in_threadpool

from selector_service.api.deps import DatabaseDep, SLMDep
from selector_service.api.pool_schemas import SelectionCreate, SelectionFull, SelectionOut
from selector_service.domain import selections

router = APIRouter(prefix="/v1", tags=["selections"])


@router.post("/selections", response_model=SelectionOut)
async def create_selection(body: SelectionCreate, database: DatabaseDep, slm: SLMDep) -> dict[str, Any]:
    """Choose and store a selection (the same parameters on the same pool and model give the same one)."""
    return await run_in_threadpool(selections.create_selection, database, model=slm.model_key, **body.model_dump())


@router.get("/selections/{selection_id}", response_model=SelectionFull)
async def get_selection(selection_id: Annotated[str, PathParam(max_length=64)],
                        database: DatabaseDep) -> dict[str, Any]:
    """The selection's record with its pool indices (ascending) and their window hashes."""
    return await run_in_threadpool(selections.find_selection, database, selection_id=selection_id)
