"""`jobstream events` against a real `jobstream up`: the service login (its --data-dir and
NATS_SERVICE_PASSWORD) reads the log; a domain token's broker login is refused, and says so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.runtime.ports import free_port
from tests.e2e.up import Up

pytestmark = pytest.mark.slow

TIMEOUT_S = 90.0


def _events(
    *args: str, password: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    drop = ("NATS_URL", "NATS_SERVICE_PASSWORD", "JOBSTREAM_URL", "JOBSTREAM_TOKEN", "JOBSTREAM_DOMAIN")
    env = {k: v for k, v in os.environ.items() if k not in drop} | (env or {})
    if password:
        env["NATS_SERVICE_PASSWORD"] = password
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "events", *args],
        capture_output=True, text=True, timeout=TIMEOUT_S, env=env,
    )  # fmt: skip


def test_the_service_login_reads_the_log_and_a_domain_token_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    up = Up(data, "--port", str(free_port()), "--nats-port", str(free_port()), "--workers", "0")
    try:
        up.wait_banner()
        tokens = up.make_domains("blue", "green")
        done = _events(
            "tail", "--data-dir", str(data), "--since", "1", "--domain", "blue", "--no-follow", "--json",
            password=up.password,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        seen = [json.loads(line) for line in done.stdout.splitlines()]
        assert seen and {r["subject"].split(".")[1] for r in seen} == {"blue"}
        assert "ev.blue.domain.blue.created" in {r["subject"] for r in seen}

        token_id, secret = tokens["blue"].removeprefix("jst_").split("_", 1)
        as_token = f"nats://jst_{token_id}:{secret}@{up.nats_url.removeprefix('nats://')}"
        for args in (
            ("tail", "--since", "1", "--domain", "blue", "--no-follow"),
            ("tail", "--domain", "blue", "--count", "1"),
            ("export", "--domain", "blue", "-o", str(tmp_path / "blue.jsonl")),
        ):
            refused = _events(*args, "--nats-url", as_token)
            assert refused.returncode == 3, (args, refused.stdout, refused.stderr)
            assert refused.stderr.startswith("error: the log could not be read"), refused.stderr
            assert "the broker refused" in refused.stderr and "domain token" in refused.stderr, refused.stderr
            assert secret not in refused.stderr

        # Through the API, a domain token follows its own domain, and only it.
        api = {"JOBSTREAM_URL": up.api_url, "JOBSTREAM_TOKEN": tokens["blue"]}
        own = _events("tail", "--api", "--since", "1", "--count", "2", "--json", env=api)
        assert own.returncode == 0, own.stderr
        rows = [json.loads(line) for line in own.stdout.splitlines()]
        assert [(r["subject"], r["type"]) for r in rows] == [
            ("ev.blue.domain.blue.created", "created"), ("ev.blue.domain.blue.token_issued", "token_issued"),
        ]  # fmt: skip
        other = _events("tail", "--api", "--since", "1", "--domain", "green", "--count", "1", env=api)
        assert other.returncode == 4 and other.stderr.startswith("error: "), (other.stdout, other.stderr)
        assert "green" not in other.stdout
        bad = _events("tail", "--api", "--no-follow", env=api)
        assert bad.returncode == 2 and "use --count N with --api" in bad.stderr, bad.stderr
    finally:
        up.stop()
