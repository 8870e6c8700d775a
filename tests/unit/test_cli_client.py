"""The CLI's client: base URLs as users paste them, and servers that are not jobstream."""

from __future__ import annotations

import fcntl
import http.server
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.cli.client import EXIT_AUTH, EXIT_NOT_YET_SHOWN, EXIT_UNAVAILABLE, Client, ClientError, base_url


@pytest.mark.parametrize(
    ("given", "want"),
    [
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("http://127.0.0.1:8000/", "http://127.0.0.1:8000"),
        ("http://127.0.0.1:8000/api/v1", "http://127.0.0.1:8000"),
        ("http://127.0.0.1:8000/api/v1/ ", "http://127.0.0.1:8000"),
    ],
)
def test_banner_url_is_accepted(given: str, want: str) -> None:
    assert base_url(given) == want


class _Other(http.server.BaseHTTPRequestHandler):
    """Some other web server: HTML 404s, or FastAPI's bare JSON 404."""

    def do_GET(self) -> None:
        if self.path.startswith("/json"):
            body, kind = b'{"detail":"Not Found"}', "application/json"
        else:
            body, kind = b"<html>nope</html>", "text/html"
        self.send_response(404)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def other_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Other)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("prefix", ["", "/json"])
def test_a_server_that_is_not_jobstream_is_named(other_server: str, prefix: str) -> None:
    with pytest.raises(ClientError) as info:
        Client.from_env(other_server + prefix, "t").get("/jobs")
    assert info.value.exit_code == EXIT_UNAVAILABLE
    assert "is not a jobstream API base URL" in str(info.value)


def test_a_pasted_placeholder_token_is_named_not_a_traceback() -> None:
    with pytest.raises(ClientError) as info:
        Client.from_env("http://127.0.0.1:9", "jst_…").get("/jobs")
    assert info.value.exit_code == EXIT_AUTH and "placeholder" in str(info.value)


def test_status_names_the_up_that_owns_a_data_dir(tmp_path: Path) -> None:
    from services.cli.status_command import _data_dir_lock

    assert _data_dir_lock(tmp_path) is None
    lock = tmp_path / "up.lock"
    lock.write_text(json.dumps({"pid": os.getpid(), "api_url": "http://127.0.0.1:1"}))
    free = _data_dir_lock(tmp_path)
    assert free is not None and "not in use" in free.detail  # a file alone is no owner
    with open(lock) as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # what a running `up` does
        owned = _data_dir_lock(tmp_path)
    assert (
        owned is not None
        and f"in use by jobstream up pid {os.getpid()}, API http://127.0.0.1:1" in owned.detail
    )


class _Accepting(http.server.BaseHTTPRequestHandler):
    """A jobstream API whose read model cannot show a write yet: 202 with what it made."""

    def do_POST(self) -> None:
        body = json.dumps({"accepted": True, "seq": 41, "id": "j1", "detail": "landed at seq 41"}).encode()
        self.send_response(202)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


def test_a_write_the_read_model_does_not_show_yet_names_what_it_made() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Accepting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(ClientError) as info:
            Client.from_env(f"http://127.0.0.1:{server.server_address[1]}", "t").post("/jobs", {})
    finally:
        server.shutdown()
        server.server_close()
    assert info.value.exit_code == EXIT_NOT_YET_SHOWN
    assert "landed at seq 41" in str(info.value) and '"id": "j1"' in str(info.value)
