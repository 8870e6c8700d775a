"""A service's environment (NATS_URL holds the service login) is not readable by a job of its user."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOBODY = "65534"
# Stands in for a service: takes the same step the CLI takes for service commands, then waits.
SERVICE = (
    "import sys, time; sys.path.insert(0, sys.argv[1]); "
    "from services.runtime.hardening import forbid_peeking; "
    "forbid_peeking() if sys.argv[2] == 'hardened' else None; print('ready', flush=True); time.sleep(30)"
)


def _as_nobody(*argv: str) -> list[str]:
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv]


@pytest.mark.skipif(shutil.which("setpriv") is None or os.geteuid() != 0, reason="needs root and setpriv")
@pytest.mark.parametrize("mode", ["hardened", "plain"])
def test_a_job_of_the_same_user_cannot_read_a_services_environment(mode: str) -> None:
    env = {**os.environ, "NATS_URL": "nats://jobstream:s3cret-service-password@127.0.0.1:1"}
    service = subprocess.Popen(
        _as_nobody(sys.executable, "-c", SERVICE, str(ROOT), mode),
        env=env, stdout=subprocess.PIPE, text=True, cwd="/",
    )  # fmt: skip
    try:
        assert service.stdout is not None and service.stdout.readline().strip() == "ready"
        time.sleep(0.1)
        job = subprocess.run(
            _as_nobody("cat", f"/proc/{service.pid}/environ"), capture_output=True, timeout=10, cwd="/"
        )
        if mode == "plain":  # the check can fail: without the step, the password is right there
            assert b"s3cret-service-password" in job.stdout
        else:
            assert job.returncode != 0 and b"s3cret" not in job.stdout, job.stdout[:200]
    finally:
        service.kill()
        service.wait()


def test_service_commands_take_the_step() -> None:
    from services.runtime.hardening import SERVICE_COMMANDS

    assert {"api", "dispatcher", "scheduler", "worker", "broker-auth", "up"} <= SERVICE_COMMANDS
    done = subprocess.run(
        [sys.executable, "-c", "from services.runtime.hardening import forbid_peeking, dumpable;"
         "assert dumpable(); forbid_peeking(); assert not dumpable()"],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
