"""Entry point of `jobstream worker`: run until SIGTERM/SIGINT, then drain."""

from __future__ import annotations

import asyncio
import logging

from services.runtime import tracing
from services.runtime.lifecycle import STOP_GRACE_S, until_stopped
from services.worker.agent import Worker
from services.worker.settings import WorkerSettings


async def serve(settings: WorkerSettings) -> None:
    worker = Worker(settings)
    # Time to drain: the grace for running jobs, then their hand-back and `stopped`.
    await until_stopped(worker.run, grace_s=settings.grace_s + STOP_GRACE_S)
    if worker.gave_up is not None:
        raise SystemExit(f"error: {worker.gave_up}")


def run(settings: WorkerSettings) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(levelname)s %(message)s")
    tracing.setup("worker")  # nothing unless OTEL_EXPORTER_OTLP_ENDPOINT is set
    asyncio.run(serve(settings))
