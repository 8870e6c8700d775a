"""Fixtures that start a whole system as processes: API, dispatcher and two workers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.runtime.nats_server import NatsServer
from services.runtime.ports import free_port
from tests.e2e.system import System


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    nats = NatsServer(tmp_path / "nats", port=free_port(), log_file=tmp_path / "nats.log").start()
    sys_ = System(tmp_path, nats)
    try:
        sys_.start_api()
        sys_.start_dispatcher()
        sys_.start_worker("w1", "--max-concurrency", "4", "--grace-s", "5")
        sys_.start_worker("w2", "--max-concurrency", "4", "--grace-s", "5")
        yield sys_
    finally:
        sys_.shutdown()
        nats.stop()
