"""The FastAPI application: its lifespan owns the NATS connection and the projector."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from events.store import EventStore
from events.streams import provision
from projections.projector import Projector
from services.api import errors
from services.api.limits import BodyLimit
from services.api.metrics import ProjectionCollector
from services.api.routes import events, health, jobs, workers
from services.api.settings import ApiSettings
from services.runtime.connect import connect, jetstream

API_PREFIX = "/api/v1"
UI_DIST = Path(__file__).resolve().parents[2] / "ui" / "dist"


def create_app(settings: ApiSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        nc = await connect(settings.nats_url, "api")
        js = jetstream(nc)
        await provision(js)
        projector = Projector(settings.db_path, nc)
        await projector.start()
        app.state.nc = nc
        app.state.js = js
        app.state.store = EventStore(nc, js)
        app.state.projector = projector
        app.state.metrics = ProjectionCollector(projector)
        try:
            yield
        finally:
            await projector.stop()
            await nc.close()

    app = FastAPI(
        title="jobstream",
        version="0.1.0",
        description="Jobs, workers and events of jobstream. Every route but /health, /ready and "
        "/metrics needs `Authorization: Bearer <token>`.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    errors.install(app)
    app.add_middleware(BodyLimit)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["*"],
            allow_headers=["*"],
        )

    @app.middleware("http")
    async def count(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        collector = getattr(request.app.state, "metrics", None)
        if collector is not None:
            collector.requests.labels(request.method, str(response.status_code)).inc()
        return response

    app.include_router(health.router)
    for router in (jobs.router, workers.router, events.router):
        app.include_router(router, prefix=API_PREFIX)
    if UI_DIST.is_dir():
        app.mount("/", StaticFiles(directory=UI_DIST, html=True), name="ui")
    return app
