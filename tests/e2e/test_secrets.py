"""Tokens never show up in process logs, in the event log or in error messages."""

from __future__ import annotations

import httpx
import pytest

from events.domain import DEFAULT_DOMAIN
from events.streams import EVENTS_STREAM, logs_stream
from tests.e2e.system import TOKEN, System, shell_job
from tests.integration.inprocess import stream_dump

pytestmark = pytest.mark.slow


def test_tokens_are_never_logged_stored_or_echoed(system: System) -> None:
    with system.client() as admin:
        made = admin.post("/admin/domains", json={"name": "vault"})
        assert made.status_code == 201, made.text
        token = made.json()["token"]["token"]
        secret = token.split("_", 2)[2]
        job = admin.post("/jobs", json=shell_job("echo working; env")).json()  # workers hold ADMIN_TOKEN
    with system.client(token) as c:
        assert c.post("/jobs", json=shell_job("true", name="vaulted")).status_code == 201
        assert c.get("/jobs").status_code == 200
    wrong = token[:-4] + "AAAA"
    with httpx.Client(base_url=f"{system.api_url}/api/v1") as anon:
        refused = anon.get("/jobs", headers={"Authorization": f"Bearer {wrong}"})
        assert refused.status_code == 401 and wrong not in refused.text and secret[:-4] not in refused.text
        refused = anon.get("/jobs", headers={"Authorization": f"Bearer {TOKEN}x"})
        assert refused.status_code == 401 and TOKEN not in refused.text
    system.wait_terminal([job["id"]])

    planted = {secret.encode(), TOKEN.encode()}
    logs = b"".join(p.read_bytes() for p in system.tmp.glob("*.log"))
    events = stream_dump(system.nats.url, EVENTS_STREAM, "ev.>")
    lines = b"".join(stream_dump(system.nats.url, logs_stream(d), "log.>") for d in (DEFAULT_DOMAIN, "vault"))
    assert b"token_issued" in events and b"working" in lines  # the places searched are not empty
    for value in planted:
        assert value not in logs, "a token is in a process log"
        assert value not in events, "a token is in the event log"
        assert value not in lines, "a token is in job output"
