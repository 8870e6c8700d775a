"""The API served on a loopback port (uvicorn in a thread of the test process), for clients that
need a real URL: the CLI in a subprocess, or an async test whose own loop runs services."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn

from services.api.app import create_app
from services.api.settings import ApiSettings
from services.runtime.ports import free_port
from tests.integration.inprocess import TOKEN

START_TIMEOUT_S = 60.0


@contextmanager
def served_api(nats_url: str, db_dir: Path) -> Iterator[str]:
    """The API's base URL (`http://127.0.0.1:PORT`) while the block runs."""
    settings = ApiSettings(nats_url=nats_url, db_path=db_dir / "projection.duckdb", admin_token=TOKEN)
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=free_port(), log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the API did not start"
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(30)
