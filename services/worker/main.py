"""Entry point of `jobstream worker`: run until SIGTERM/SIGINT, then drain."""

from __future__ import annotations

import asyncio
import logging
import signal

from services.worker.agent import Worker
from services.worker.settings import WorkerSettings


async def serve(settings: WorkerSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    worker = Worker(settings)
    await worker.run(stop)
    if worker.gave_up is not None:
        raise SystemExit(f"error: {worker.gave_up}")


def run(settings: WorkerSettings) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(levelname)s %(message)s")
    asyncio.run(serve(settings))
