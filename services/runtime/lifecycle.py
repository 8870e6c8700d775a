"""Running a service until SIGTERM/SIGINT, also while it is still starting.

A service stops itself when its stop event is set, but only once it checks it: one still
connecting to an unreachable broker, or waiting on JetStream, never looks. So a stop gives
the service `grace_s` to end by itself (a worker drains its jobs meanwhile) and then cancels
it, and a process manager's SIGTERM is never ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
STOP_GRACE_S = 10.0


async def until_stopped(
    body: Callable[[asyncio.Event], Awaitable[T]], grace_s: float = STOP_GRACE_S
) -> T | None:
    """Run `body(stop)`; on SIGTERM/SIGINT set `stop`, and cancel `body` if it has not ended
    within `grace_s`. Returns what `body` returned (None if it had to be cancelled)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    task: asyncio.Future[T] = asyncio.ensure_future(body(stop))
    stopped: asyncio.Future[object] = asyncio.ensure_future(stop.wait())
    either: list[asyncio.Future[object]] = [task, stopped]  # type: ignore[list-item]
    try:
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            done, _ = await asyncio.wait({task}, timeout=grace_s)
            if not done:
                log.warning(
                    "still busy %.0fs after the stop signal (starting, or no broker): stopping now", grace_s
                )
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                return None
        return task.result()
    finally:
        stopped.cancel()
