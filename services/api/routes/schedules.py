"""Schedule routes: create, list, show, change, pause/resume, run-now, backfill, history, preview."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response

from events.base import Conflict, utcnow
from events.firetimes import fire_times
from events.ids import is_token
from events.schedule import (
    ScheduleEvent,
    ScheduleSpec,
    ScheduleState,
    check_spec,
    decide_delete,
    decide_pause,
    decide_resume,
    decide_update,
    planned_at,
)
from projections import schedule_queries
from services.api import as_of, templating
from services.api import schedule_commands as commands
from services.api.auth import Caller, caller
from services.api.deps import query, settle, store
from services.api.schedule_models import (
    BackfillIn,
    BackfillOut,
    NoteIn,
    ScheduleIn,
    SchedulePage,
    SchedulePatch,
)

router = APIRouter(prefix="/schedules", tags=["schedules"])

MAX_PAGE = 500
MAX_PREVIEW = 1000


async def _view(request: Request, who: Caller, schedule_id: str) -> dict[str, Any]:
    found = (
        await query(request, schedule_queries.get_schedule, who.domain, schedule_id)
        if is_token(schedule_id)
        else None
    )
    if found is None:
        raise HTTPException(404, detail=f"schedule {schedule_id} not found")
    return found


async def _live(request: Request, who: Caller, schedule_id: str) -> dict[str, Any]:
    found = await _view(request, who, schedule_id)
    if found["status"] == "deleted":
        raise HTTPException(404, detail=f"schedule {schedule_id} was deleted")
    return found


async def _spec(request: Request, who: Caller, body: ScheduleIn) -> ScheduleSpec:
    if body.template is None:
        return body.to_spec()
    return body.to_spec(await templating.resolve(request, who, body.template))


@router.post("", status_code=201, summary="Create a schedule")
async def create(body: ScheduleIn, request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
    if await query(request, schedule_queries.find_by_name, who.domain, body.name) is not None:
        raise Conflict(
            f"a schedule named {body.name!r} exists; change it with PATCH or use /schedules/upsert"
        )
    spec = await _spec(request, who, body)
    schedule_id, seq = await commands.create(store(request), who.domain, who.actor, spec)
    await settle(request, seq, id=schedule_id)
    return await _view(request, who, schedule_id)


@router.post("/preview", summary="The next fire times of a schedule not saved yet, checked as create would")
async def preview_unsaved(
    body: ScheduleIn,
    request: Request,
    who: Caller = Depends(caller),
    count: int = Query(default=10, ge=1, le=MAX_PREVIEW),
) -> list[dict[str, Any]]:
    """The create body, refused with the same errors create gives (naming the field), and
    nothing appended. `fire_at` is null when the spec has `jitter_s`: a tick's jitter comes from
    the schedule's id, which it has only once saved."""
    spec = await _spec(request, who, body)
    now = utcnow()
    check_spec(spec, now)
    zone = ZoneInfo(spec.timezone)
    return [
        {"tick": tick.isoformat(), "local": tick.astimezone(zone).isoformat(),
         "fire_at": tick.isoformat() if spec.jitter_s == 0 else None}
        for tick in fire_times(spec.trigger(now), now, count)
    ]  # fmt: skip


@router.post("/upsert", summary="Create or change the schedule with this name (idempotent)")
async def upsert(
    body: ScheduleIn, request: Request, response: Response, who: Caller = Depends(caller)
) -> dict[str, Any]:
    existing = await query(request, schedule_queries.find_by_name, who.domain, body.name)
    spec = await _spec(request, who, body)
    outcome = "created"
    if existing is None:
        schedule_id, seq = await commands.create(store(request), who.domain, who.actor, spec)
        response.status_code = 201
    else:
        schedule_id = existing["id"]

        def decide(state: ScheduleState) -> Any:
            nonlocal outcome
            wanted = msgspec.structs.replace(spec, paused=state.spec.paused)
            outcome = "unchanged" if wanted == state.spec else "updated"
            return None if wanted == state.spec else decide_update(state, wanted, who.actor)

        seq = await commands.change(store(request), who.domain, schedule_id, decide)
    await settle(request, seq, id=schedule_id)
    # Said in the body too: a script must know whether its upsert changed anything.
    return {**await _view(request, who, schedule_id), "upsert": outcome}


@router.get("", summary="List schedules with their next and last fire times")
async def list_schedules(
    request: Request,
    who: Caller = Depends(caller),
    status: str | None = Query(default=None, description="active, paused, ended, deleted (comma list)"),
    name: str | None = None,
    label: str | None = Query(default=None, description="key=value"),
) -> list[dict[str, Any]]:
    return await query(
        request, schedule_queries.list_schedules, who.domain, status=status, name=name, label=label
    )


@router.get("/{schedule_id}", summary="A schedule, its state and counters")
async def get_schedule(
    schedule_id: str, request: Request, who: Caller = Depends(caller), as_of_seq: int | None = as_of.AS_OF_SEQ
) -> dict[str, Any]:
    if as_of_seq is not None and is_token(schedule_id):
        return await as_of.schedule_as_of(request, who.domain, schedule_id, as_of_seq)
    return await _view(request, who, schedule_id)


@router.patch("/{schedule_id}", summary="Change some fields of a schedule")
async def patch(
    schedule_id: str, body: SchedulePatch, request: Request, who: Caller = Depends(caller)
) -> dict[str, Any]:
    await _live(request, who, schedule_id)
    resolved = await templating.resolve(request, who, body.template) if body.template else None

    def decide(state: ScheduleState) -> Any:
        merged = body.merge(msgspec.to_builtins(state.spec))
        if resolved is not None:
            spec = merged.to_spec(resolved)
        else:
            keep = state.spec.template if body.job is None else None
            spec = msgspec.structs.replace(merged.to_spec(), template=keep)
        return decide_update(state, msgspec.structs.replace(spec, paused=state.spec.paused), who.actor)

    seq = await commands.change(store(request), who.domain, schedule_id, decide)
    await settle(request, seq, id=schedule_id)
    return await _view(request, who, schedule_id)


@router.delete("/{schedule_id}", summary="Delete a schedule: it stops firing; its history stays")
async def delete(schedule_id: str, request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
    return await _decide(request, who, schedule_id, lambda s: decide_delete(s, who.actor))


async def _decide(
    request: Request, who: Caller, schedule_id: str, decide: Callable[[ScheduleState], ScheduleEvent | None]
) -> dict[str, Any]:
    """One decision on a live schedule, answered once the projection shows it."""
    await _live(request, who, schedule_id)
    seq = await commands.change(store(request), who.domain, schedule_id, decide)
    await settle(request, seq, id=schedule_id)
    return await _view(request, who, schedule_id)


async def _pause(request: Request, who: Caller, schedule_id: str, body: NoteIn | None) -> dict[str, Any]:
    note = body.note if body else ""
    return await _decide(request, who, schedule_id, lambda s: decide_pause(s, who.actor, note))


async def _resume(request: Request, who: Caller, schedule_id: str, body: NoteIn | None) -> dict[str, Any]:
    note = body.note if body else ""
    return await _decide(request, who, schedule_id, lambda s: decide_resume(s, who.actor, note))


@router.post("/{schedule_id}/pause", summary="Stop firing until resumed; ticks meanwhile are not run")
async def pause(
    schedule_id: str, request: Request, body: NoteIn | None = None, who: Caller = Depends(caller)
) -> dict[str, Any]:
    return await _pause(request, who, schedule_id, body)


@router.post("/{schedule_id}/resume", summary="Fire again from the next tick after now")
async def resume(
    schedule_id: str, request: Request, body: NoteIn | None = None, who: Caller = Depends(caller)
) -> dict[str, Any]:
    return await _resume(request, who, schedule_id, body)


@router.post("/{schedule_id}/disable", summary="Same as pause (the seeds' name)")
async def disable(
    schedule_id: str, request: Request, body: NoteIn | None = None, who: Caller = Depends(caller)
) -> dict[str, Any]:
    return await _pause(request, who, schedule_id, body)


@router.post("/{schedule_id}/enable", summary="Same as resume (the seeds' name)")
async def enable(
    schedule_id: str, request: Request, body: NoteIn | None = None, who: Caller = Depends(caller)
) -> dict[str, Any]:
    return await _resume(request, who, schedule_id, body)


@router.post("/{schedule_id}/run-now", status_code=201, summary="Run the schedule's job now")
async def run_now(schedule_id: str, request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
    await _live(request, who, schedule_id)
    job_id, seq = await commands.run_now(store(request), who.domain, schedule_id, who.actor)
    await settle(request, seq, id=schedule_id, job_id=job_id)
    return {"job_id": job_id, "schedule": await _view(request, who, schedule_id)}


@router.post("/{schedule_id}/backfill", summary="Fire the ticks of a past time range")
async def backfill(
    schedule_id: str, body: BackfillIn, request: Request, who: Caller = Depends(caller)
) -> BackfillOut:
    await _live(request, who, schedule_id)
    ticks, fired, existing, queued, seq = await commands.backfill(
        store(request), who.domain, schedule_id, who.actor, body.start, body.end, body.overlap_policy
    )
    out = BackfillOut(ticks=len(ticks), fired=fired, existing=existing, queued=queued)
    await settle(request, seq, id=schedule_id, **out.model_dump())
    return out


@router.get("/{schedule_id}/runs", summary="Tick history: tick, fire time, job and its status, lateness")
async def runs(
    schedule_id: str,
    request: Request,
    who: Caller = Depends(caller),
    limit: int = Query(default=50, ge=1, le=MAX_PAGE),
    before: int | None = Query(default=None, ge=1, description="next_before of the previous page"),
) -> SchedulePage:
    await _view(request, who, schedule_id)
    items, next_before = await query(
        request, schedule_queries.schedule_runs, who.domain, schedule_id, limit=limit, before=before
    )
    return SchedulePage(items=items, next_before=next_before)


@router.get("/{schedule_id}/preview", summary="The next fire times, in the schedule's zone and in UTC")
async def preview(
    schedule_id: str,
    request: Request,
    who: Caller = Depends(caller),
    count: int = Query(default=10, ge=1, le=MAX_PREVIEW),
) -> list[dict[str, Any]]:
    await _live(request, who, schedule_id)
    state = await query(request, schedule_queries.get_state, who.domain, schedule_id)
    assert state is not None
    after = max(utcnow(), state.cursor or state.created_at)
    zone = ZoneInfo(state.spec.timezone)
    out = []
    for tick in fire_times(state.trigger, after, count):
        fire = planned_at(state, tick)
        out.append({"tick": tick.isoformat(), "local": tick.astimezone(zone).isoformat(),
                    "fire_at": fire.isoformat()})  # fmt: skip
    return out
