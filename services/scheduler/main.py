"""Entry point of `jobstream scheduler`."""

from __future__ import annotations

import asyncio
import logging

from services.runtime import tracing
from services.runtime.lifecycle import until_stopped
from services.scheduler.service import Scheduler


async def serve(nats_url: str) -> None:
    await until_stopped(Scheduler(nats_url).run)


def run(nats_url: str) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s scheduler %(levelname)s %(message)s")
    tracing.setup("scheduler")  # nothing unless OTEL_EXPORTER_OTLP_ENDPOINT is set
    asyncio.run(serve(nats_url))
