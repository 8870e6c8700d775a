"""The FastAPI application: its lifespan owns the NATS connection and the projector."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from events.store import EventStore
from events.streams import provision, provision_logs
from projections.projector import Projector
from services.api import errors
from services.api.auth import RequireToken
from services.api.domain_commands import ensure_default
from services.api.limits import BodyLimit
from services.api.metrics import ProjectionCollector
from services.api.ratelimit import RateLimiter, StreamSlots
from services.api.routes import (
    admin,
    analytics,
    bulk,
    events,
    health,
    info,
    jobs,
    read_model,
    schedules,
    sql,
    templates,
    workers,
)
from services.api.server_spans import HeadSampledApi, telemetry
from services.api.settings import ApiSettings
from services.api.strict import no_unknown_query
from services.api.ui_files import UI_DIST, SinglePageApp
from services.runtime import tracing
from services.runtime.connect import connect, jetstream

API_PREFIX = "/api/v1"
STARTUP_TIMEOUT_S = 600.0


class CountRequests:
    """Counts responses by method and status; plain ASGI, because @app.middleware("http")
    (BaseHTTPMiddleware) adds a task and a memory stream to every request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                collector = getattr(scope["app"].state, "metrics", None)
                if collector is not None:
                    collector.requests.labels(scope["method"], str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, counting_send)


def create_app(settings: ApiSettings) -> FastAPI:
    tracing.setup("api")  # nothing unless OTEL_EXPORTER_OTLP_ENDPOINT is set

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
        # The default domain exists before the first request is answered.
        if not await projector.wait_for(await ensure_default(app.state.store), STARTUP_TIMEOUT_S):
            raise RuntimeError("the read model did not catch up with the log at start")
        # Every live domain has its output stream, also one whose creation was cut short.
        await provision_logs(js, [n for n, d in projector.domains.items() if not d.deleted])
        app.state.metrics = ProjectionCollector(projector)
        try:
            yield
        finally:
            await projector.stop()
            await nc.close()

    # Swagger UI's scripts are served from the package, not a CDN: /docs works offline.
    app = FastAPIOffline(
        title="jobstream",
        version="0.1.0",
        description="Jobs, workers and events of jobstream. Every route but /health, /ready and "
        "/metrics needs `Authorization: Bearer <token>`.",
        lifespan=lifespan,
        dependencies=[Depends(no_unknown_query)],
        telemetry=telemetry(),  # SERVER spans, once tracing.setup installed a provider
    )
    # FastAPIOffline builds a plain FastAPI; this subclass only adds the sampling decided
    # before FastAPI's telemetry (services/api/server_spans.py), no state of its own.
    app.__class__ = HeadSampledApi
    app.state.settings = settings
    app.state.token_last_used = {}
    app.state.limiter = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)
    app.state.streams = StreamSlots(settings.streams_per_token)
    errors.install(app)
    app.add_middleware(BodyLimit)
    app.add_middleware(RequireToken, prefix=API_PREFIX)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["*"],
            allow_headers=["*"],
        )

    app.add_middleware(CountRequests)
    app.include_router(health.router)
    for router in (
        bulk.router,  # before jobs: /jobs/bulk/cancel is not job `bulk`'s cancel
        jobs.router,
        schedules.router,
        templates.router,
        workers.router,
        events.router,
        admin.router,
        info.router,
        analytics.router,
        sql.router,
        read_model.router,
    ):
        app.include_router(router, prefix=API_PREFIX)
    app.mount("/", SinglePageApp(UI_DIST, API_PREFIX), name="ui")
    return app
