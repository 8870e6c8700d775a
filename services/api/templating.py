"""Turning job bodies that name a template into specs: the template's version, then the overrides."""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import HTTPException, Request
from pydantic import ValidationError

from events.job import JobSpec
from projections import template_queries
from services.api.auth import Caller
from services.api.deps import query
from services.api.models import JobIn, TemplateJobIn


async def resolve(request: Request, who: Caller, body: JobIn | TemplateJobIn) -> tuple[JobSpec, str | None]:
    """The spec to submit and, for a template, its "name@version"."""
    if isinstance(body, JobIn):
        return body.to_spec(), None
    state = await query(request, template_queries.get_state, who.domain, body.template)
    if state is None or state.deleted:
        raise HTTPException(404, detail=f"template {body.template} not found")
    if body.version is not None and not any(v.version == body.version for v in state.versions):
        raise HTTPException(404, detail=f"template {body.template} has no version {body.version}")
    chosen = state.version(body.version)
    merged: dict[str, Any] = {**msgspec.to_builtins(chosen.spec), **body.overrides}
    try:
        job = JobIn.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "overrides"
        raise HTTPException(422, detail=f"overrides: {where}: {first['msg']}") from exc
    return job.to_spec(), f"{state.name}@{chosen.version}"


async def resolve_all(
    request: Request, who: Caller, bodies: list[JobIn | TemplateJobIn]
) -> tuple[list[JobSpec], list[str | None]]:
    cache: dict[tuple[str, int | None, str], tuple[JobSpec, str | None]] = {}
    specs: list[JobSpec] = []
    refs: list[str | None] = []
    for body in bodies:
        if isinstance(body, TemplateJobIn) and not body.overrides:
            key = (body.template, body.version, "")
            if key not in cache:
                cache[key] = await resolve(request, who, body)
            spec, ref = cache[key]
        else:
            spec, ref = await resolve(request, who, body)
        specs.append(spec)
        refs.append(ref)
    return specs, refs
