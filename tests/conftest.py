"""Shared fixtures: a real nats-server on a free port with a temporary store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from events.store import EventStore
from events.streams import provision
from services.runtime.connect import connect, jetstream
from services.runtime.nats_server import NatsServer
from services.runtime.ports import free_port


def start_server(tmp: Path) -> NatsServer:
    return NatsServer(tmp / "nats", port=free_port(), log_file=tmp / "nats.log").start()


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """One server for tests that can share it; each test uses its own domain or job ids."""
    server = start_server(tmp_path_factory.mktemp("nats-session"))
    yield server
    server.stop()


@pytest.fixture
def own_nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A server of the test's own, for tests that kill or restart it."""
    server = start_server(tmp_path)
    yield server
    server.stop()


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[NATS]:
    conn = await connect(nats_server.url, "test")
    await provision(jetstream(conn))
    yield conn
    await conn.close()


@pytest.fixture
def js(nc: NATS) -> JetStreamContext:
    return jetstream(nc)


@pytest.fixture
def store(nc: NATS, js: JetStreamContext) -> EventStore:
    return EventStore(nc, js)
