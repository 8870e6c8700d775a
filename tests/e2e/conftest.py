"""Fixtures that start a whole system as processes: API, dispatcher and two workers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.runtime.nats_server import NatsServer
from services.runtime.ports import free_port
from tests.e2e.system import System, audit_log


@pytest.fixture
def system(tmp_path: Path) -> Iterator[System]:
    """The whole system; at teardown, once its processes stopped, its log is audited and any
    violation fails the test (so every end-to-end test checks the invariants on its own log)."""
    nats = NatsServer(tmp_path / "nats", port=free_port(), log_file=tmp_path / "nats.log").start()
    sys_ = System(tmp_path, nats)
    found: str | None = None
    try:
        sys_.start_api()
        sys_.start_dispatcher()
        sys_.start_worker("w1", "--max-concurrency", "4", "--grace-s", "5")
        sys_.start_worker("w2", "--max-concurrency", "4", "--grace-s", "5")
        yield sys_
    finally:
        sys_.shutdown()
        if nats.proc is not None and nats.proc.poll() is None:
            found = audit_log(nats.url)
        nats.stop()
    if found:
        pytest.fail(f"the system's event log breaks an invariant\n{found}", pytrace=False)
