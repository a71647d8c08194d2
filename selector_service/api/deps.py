"""Dependencies of the routes: what the lifespan put on the app's state, as ``Annotated`` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from selector_service.cache.label_cache import LabelCache
from selector_service.cache.slm import SLMRunner
from selector_service.config import Settings
from selector_service.domain.jobs import JobRunner
from selector_service.store.database import Database


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_label_cache(request: Request) -> LabelCache:
    return request.app.state.label_cache


def get_slm(request: Request) -> SLMRunner:
    return request.app.state.label_cache.slm


def get_database(request: Request) -> Database:
    return request.app.state.label_cache.database


def get_jobs(request: Request) -> JobRunner:
    return request.app.state.jobs


SettingsDep = Annotated[Settings, Depends(get_settings)]
LabelCacheDep = Annotated[LabelCache, Depends(get_label_cache)]
SLMDep = Annotated[SLMRunner, Depends(get_slm)]
DatabaseDep = Annotated[Database, Depends(get_database)]
JobsDep = Annotated[JobRunner, Depends(get_jobs)]
