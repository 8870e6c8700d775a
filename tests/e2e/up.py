"""Drive `jobstream up` as a user would: a subprocess, its banner, its API."""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.e2e.system import audit_log

BANNER_TIMEOUT_S = 60.0


class Up:
    """`generated_password`: let `up` make its own service password (kept in its memory only);
    otherwise the test knows it (given, or made here), and `stop` audits the log with it."""

    def __init__(self, data_dir: Path, *args: str, generated_password: bool = False) -> None:
        env = {k: v for k, v in os.environ.items() if k != "ADMIN_TOKEN"}
        if generated_password:
            env.pop("NATS_SERVICE_PASSWORD", None)
        else:
            env.setdefault("NATS_SERVICE_PASSWORD", f"e2e-{secrets.token_hex(16)}")
        self.password = env.get("NATS_SERVICE_PASSWORD", "")
        self.log = data_dir.parent / f"up-{time.monotonic_ns()}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "up", "--data-dir", str(data_dir), *args],
            stdout=open(self.log, "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.api_url = self.nats_url = self.token = ""

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_banner(self) -> Up:
        deadline = time.monotonic() + BANNER_TIMEOUT_S
        while time.monotonic() < deadline:
            out = self.output()
            if "jobstream is up" in out and "Ctrl-C" in out:
                self.api_url = re.search(r"API\s+(http://\S+)/api/v1", out).group(1)  # type: ignore[union-attr]
                self.nats_url = re.search(r"NATS\s+(nats://\S+)", out).group(1)  # type: ignore[union-attr]
                self.token = re.search(r"admin token (\S+)", out).group(1)  # type: ignore[union-attr]
                return self
            if self.proc.poll() is not None:
                raise AssertionError(f"up exited {self.proc.returncode}:\n{out}")
            time.sleep(0.2)
        raise AssertionError(f"no banner:\n{self.output()}")

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.api_url}/api/v1", headers={"Authorization": f"Bearer {self.token}"}, timeout=30
        )

    def service_url(self) -> str:
        """The broker as the services reach it: the banner's URL(s) with the service login."""
        login = f"nats://jobstream:{self.password}@"
        return ",".join(part.replace("nats://", login, 1) for part in self.nats_url.split(","))

    def stop(self) -> int:
        """Stop `up`; first, while it runs, audit its log (when the test knows the login)."""
        found = None
        if self.password and self.nats_url and self.proc.poll() is None:
            found = audit_log(self.service_url())
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(60)
        assert found is None, f"the event log of `up` breaks an invariant\n{found}"
        return code

    def make_domains(self, *names: str) -> dict[str, str]:
        """Create domains with the admin token; each one's first token, by name."""
        tokens = {}
        with self.client() as c:
            for name in names:
                made = c.post("/admin/domains", json={"name": name})
                assert made.status_code == 201, made.text
                tokens[name] = str(made.json()["token"]["token"])
        return tokens
