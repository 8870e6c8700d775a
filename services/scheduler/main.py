"""Entry point of `jobstream scheduler`."""

from __future__ import annotations

import asyncio
import logging
import signal

from services.scheduler.service import Scheduler


async def serve(nats_url: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await Scheduler(nats_url).run(stop)


def run(nats_url: str) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s scheduler %(levelname)s %(message)s")
    asyncio.run(serve(nats_url))
