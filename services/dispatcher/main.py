"""Entry point of `jobstream dispatcher`."""

from __future__ import annotations

import asyncio
import logging

from services.dispatcher.service import Dispatcher
from services.runtime import tracing
from services.runtime.lifecycle import until_stopped


async def serve(nats_url: str, max_running_per_domain: int = 0) -> None:
    await until_stopped(Dispatcher(nats_url, max_running_per_domain=max_running_per_domain).run)


def run(nats_url: str, max_running_per_domain: int = 0) -> None:
    """Run until SIGTERM/SIGINT; `max_running_per_domain` caps dispatched + running jobs (0: no cap)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s dispatcher %(levelname)s %(message)s")
    tracing.setup("dispatcher")  # nothing unless OTEL_EXPORTER_OTLP_ENDPOINT is set
    asyncio.run(serve(nats_url, max_running_per_domain))
