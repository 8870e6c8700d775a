"""`jobstream status` against a running system: what a user runs first when something is off."""

from __future__ import annotations

import json

import pytest

from tests.e2e.system import System
from tests.e2e.test_cli import cli

pytestmark = pytest.mark.slow


def test_status_reports_each_part_and_fails_on_what_is_wrong(system: System) -> None:
    system.wait(lambda: any(w["status"] == "active" for w in system.workers()), what="a live worker")
    ok = cli(system, "status", "--json")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    checks = {c["name"]: c for c in json.loads(ok.stdout)}
    assert {
        "API",
        "API ready",
        "token",
        "broker from the API",
        "broker from here",
        "workers",
        "versions",
    } <= set(checks)
    assert all(c["ok"] for c in checks.values()), checks
    assert "admin token" in checks["token"]["detail"]
    assert "@" not in checks["broker from the API"]["detail"], "the broker's login must not be shown"

    bad_token = cli(system, "status", token="not-a-token")
    assert bad_token.returncode == 3, bad_token.stdout
    assert "BAD  token" in bad_token.stdout

    system.stop("w1")
    system.stop("w2")
    system.wait(lambda: not any(w["status"] == "active" for w in system.workers()), what="no live worker")
    no_workers = cli(system, "status")
    assert no_workers.returncode == 5
    assert "BAD  workers" in no_workers.stdout and "stay pending" in no_workers.stdout

    system.stop("api")
    down = cli(system, "status")
    assert down.returncode == 5 and "does not answer" in down.stdout
