"""The API in-process (FastAPI TestClient) on a real nats-server and DuckDB file, and log probes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from events.store import EventStore
from services.api.app import create_app
from services.api.settings import ApiSettings
from services.runtime.connect import connect, jetstream

TOKEN = "test-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@contextmanager
def api_client(nats_url: str, db_dir: Path, **settings: Any) -> Iterator[TestClient]:
    app = create_app(
        ApiSettings(nats_url=nats_url, db_path=db_dir / "projection.duckdb", admin_token=TOKEN, **settings)
    )
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield client


def last_seq(url: str) -> int:
    async def read() -> int:
        nc = await connect(url, "probe", max_reconnect_attempts=0)
        try:
            return await EventStore(nc, jetstream(nc)).last_seq()
        finally:
            await nc.close()

    return asyncio.run(read())


def stream_dump(url: str, stream: str, subject: str) -> bytes:
    """Every message of a stream matching `subject`: subject, data and headers, one per line."""

    async def read() -> bytes:
        nc = await connect(url, "probe", max_reconnect_attempts=0)
        sub = await jetstream(nc).subscribe(subject, stream=stream, ordered_consumer=True)
        out = []
        try:
            while True:
                msg = await sub.next_msg(timeout=1)
                out.append(msg.subject.encode() + b" " + msg.data + b" " + repr(msg.headers).encode())
                if msg.metadata.num_pending == 0:
                    break
        except TimeoutError:
            pass
        finally:
            await nc.close()
        return b"\n".join(out)

    return asyncio.run(read())
