"""Template routes: named, versioned job specs of a domain."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import Field

from events import subjects
from events.base import Conflict, NotFound
from events.ids import is_token
from events.store import WrongExpectedSequence, template_append
from events.template import decide_delete, decide_save, evolve_template
from projections import template_queries
from projections.mapping import full
from services.api.auth import Caller, caller
from services.api.causation import caused, fold_last
from services.api.deps import query, settle, store
from services.api.models import JobIn, Strict

router = APIRouter(prefix="/templates", tags=["templates"])

ATTEMPTS = 5


class TemplateIn(Strict):
    job: JobIn
    description: Annotated[str, Field(max_length=1000)] = ""


async def _view(request: Request, who: Caller, name: str) -> dict[str, Any]:
    state = await query(request, template_queries.get_state, who.domain, name) if is_token(name) else None
    if state is None or state.deleted:
        raise HTTPException(404, detail=f"template {name} not found")
    return template_queries.view(state)


@router.put("/{name}", summary="Save a template: a new version, or nothing if the spec is unchanged")
async def save(
    name: str, body: TemplateIn, request: Request, response: Response, who: Caller = Depends(caller)
) -> dict[str, Any]:
    spec = body.job.to_spec()
    for _ in range(ATTEMPTS):
        state, last, cause = await fold_last(
            store(request), subjects.template_all(who.domain, name), evolve_template
        )
        event = decide_save(state, who.domain, name, spec, who.actor, body.description)
        if event is None:
            response.status_code = 200
            await settle(request, last, name=name)
            return await _view(request, who, name)
        try:
            seq = (await store(request).append(template_append(caused(event, cause), last))).seq
        except WrongExpectedSequence:
            continue
        response.status_code = 201
        await settle(request, seq, name=name)
        return await _view(request, who, name)
    raise Conflict(f"template {name} kept changing; try again")


@router.get("", summary="The domain's templates, each with its latest spec")
async def list_templates(request: Request, who: Caller = Depends(caller)) -> list[dict[str, Any]]:
    return await query(request, template_queries.list_templates, who.domain)


@router.get("/{name}", summary="A template: latest spec and its versions")
async def get_template(name: str, request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
    return await _view(request, who, name)


@router.get("/{name}/versions/{version}", summary="One version's spec")
async def get_version(
    name: str, version: int, request: Request, who: Caller = Depends(caller)
) -> dict[str, Any]:
    await _view(request, who, name)
    state = await query(request, template_queries.get_state, who.domain, name)
    assert state is not None
    found = next((v for v in state.versions if v.version == version), None)
    if found is None:
        raise NotFound(f"template {name} has no version {version}")
    return {"name": name, "version": version, "job": full(found.spec)}


@router.delete("/{name}", summary="Delete a template; jobs made from it keep their spec")
async def delete(name: str, request: Request, who: Caller = Depends(caller)) -> dict[str, str]:
    await _view(request, who, name)
    state, last, cause = await fold_last(
        store(request), subjects.template_all(who.domain, name), evolve_template
    )
    assert state is not None
    event = caused(decide_delete(state, who.actor), cause)
    seq = (await store(request).append(template_append(event, last))).seq
    await settle(request, seq, name=name)
    return {"name": name, "status": "deleted"}
