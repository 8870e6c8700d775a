"""Entry point of `jobstream dispatcher`."""

from __future__ import annotations

import asyncio
import logging
import signal

from services.dispatcher.service import Dispatcher


async def serve(nats_url: str, max_running_per_domain: int = 0) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await Dispatcher(nats_url, max_running_per_domain=max_running_per_domain).run(stop)


def run(nats_url: str, max_running_per_domain: int = 0) -> None:
    """Run until SIGTERM/SIGINT; `max_running_per_domain` caps dispatched + running jobs (0: no cap)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s dispatcher %(levelname)s %(message)s")
    asyncio.run(serve(nats_url, max_running_per_domain))
