"""Entry points of `jobstream projector` (standalone read model) and `jobstream rebuild` (a bulk
replay into a sibling file, swapped in; `jobstream replay` is in replay_command.py)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from events.streams import provision
from projections.projector import Projector
from projections.rebuild import rebuild
from services.runtime.connect import connect, jetstream
from services.runtime.lifecycle import until_stopped

log = logging.getLogger(__name__)
REPORT_EVERY_S = 30.0


async def serve(nats_url: str, db_path: Path) -> None:
    await until_stopped(lambda stop: _serve(nats_url, db_path, stop))


async def _serve(nats_url: str, db_path: Path, stop: asyncio.Event) -> None:
    nc = await connect(nats_url, "projector")
    await provision(jetstream(nc))
    projector = Projector(db_path, nc)
    await projector.start()
    try:
        while not stop.is_set():
            try:
                async with asyncio.timeout(REPORT_EVERY_S):
                    await stop.wait()
            except TimeoutError:
                log.info("applied up to seq %d, lag %d", projector.applied_seq, await projector.lag())
    finally:
        await projector.stop()
        await nc.close()


def run(nats_url: str, db_path: Path) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s projector %(levelname)s %(message)s")
    asyncio.run(serve(nats_url, db_path))


async def _rebuild(nats_url: str, db_path: Path) -> int:
    from services.projector.replay_command import Reporter

    nc = await connect(nats_url, "rebuild", max_reconnect_attempts=0)
    try:
        return await rebuild(db_path, nc, on_progress=Reporter("rebuild"))
    finally:
        await nc.close()


def run_rebuild(nats_url: str, db_path: Path) -> int:
    return asyncio.run(_rebuild(nats_url, db_path))
