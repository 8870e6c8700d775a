"""Liveness, readiness and Prometheus metrics; the only routes without a token."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.api.deps import projector

router = APIRouter(tags=["health"])

READY_MAX_LAG = 10_000


@router.get("/health", summary="The process is up")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", summary="Connected to NATS and the read model is caught up")
async def ready(request: Request) -> JSONResponse:
    nc = request.app.state.nc
    if not nc.is_connected:
        return JSONResponse({"status": "not ready", "reason": "not connected to NATS"}, status_code=503)
    building = projector(request).building
    if building is not None:
        # Answering from the old read model while the new schema version builds: ready, and saying so.
        prog = building.progress
        replay = {"seq": prog.seq, "target_seq": prog.target_seq, "events_per_second": round(prog.rate),
                  "eta_s": None if prog.eta_s is None else round(prog.eta_s, 1)}  # fmt: skip
        return JSONResponse({"status": "ready", "read_model": building.describe(), "replay": replay})
    lag = await projector(request).lag()
    if lag > READY_MAX_LAG:
        return JSONResponse(
            {"status": "not ready", "reason": f"projection lags {lag} events"}, status_code=503
        )
    return JSONResponse({"status": "ready", "projection_lag": lag})


@router.get("/metrics", summary="Prometheus metrics")
async def metrics(request: Request) -> Response:
    collector = request.app.state.metrics
    await collector.refresh()
    return Response(generate_latest(collector.registry), media_type=CONTENT_TYPE_LATEST)
