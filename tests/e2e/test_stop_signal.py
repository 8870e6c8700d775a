"""SIGTERM stops a service also while it is still starting: here, with no broker to reach."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.runtime.lifecycle import STOP_GRACE_S
from services.runtime.ports import free_port

pytestmark = pytest.mark.slow


def test_services_that_cannot_reach_nats_still_stop_on_sigterm(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "NATS_URL": f"nats://127.0.0.1:{free_port()}",  # nobody listens there
        "NATS_SERVICE_PASSWORD": "stop-signal-test-password",
    }
    stand_in = subprocess.Popen(["sleep", "60"])
    services = {
        "dispatcher": [],
        "scheduler": [],
        "worker": ["--id", "w1", "--grace-s", "0"],
        # It never gets to reload anything; should it, a stand-in takes the SIGHUP, not pytest.
        "broker-auth": ["--conf", str(tmp_path / "auth.conf"), "--server-pid", str(stand_in.pid)],
    }
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "services.cli", name, *args], env=env, stdout=subprocess.DEVNULL
        )
        for name, args in services.items()
    }
    time.sleep(3)  # well into its reconnect loop
    for proc in procs.values():
        assert proc.poll() is None, "a service gave up at once instead of waiting for the broker"
        proc.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    for name, proc in procs.items():
        try:
            proc.wait(timeout=STOP_GRACE_S + 10)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"{name} ignored SIGTERM while connecting")
    assert time.monotonic() - t0 < STOP_GRACE_S + 10
    stand_in.kill()
    stand_in.wait()
