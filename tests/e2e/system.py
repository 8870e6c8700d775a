"""A whole jobstream as real processes on loopback, for end-to-end tests that kill parts of it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from services.runtime.nats_server import NatsServer
from services.runtime.ports import free_port

TOKEN = "e2e-admin-token"
TERMINAL = {"succeeded", "failed", "timed_out", "cancelled"}
START_TIMEOUT_S = 30.0


@dataclass
class System:
    tmp: Path
    nats: NatsServer
    api_port: int = field(default_factory=free_port)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def env(self) -> dict[str, str]:
        base = {**os.environ, "ADMIN_TOKEN": TOKEN, "NATS_URL": self.nats.url, "PYTHONUNBUFFERED": "1"}
        return base | self.extra_env

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.cli", *args],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.procs[name] = proc
        return proc

    def start_api(self) -> None:
        self._spawn("api", "api", "--port", str(self.api_port), "--db", str(self.tmp / "projection.duckdb"))
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.api_url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.procs["api"].poll() is not None:
                raise RuntimeError(f"api exited: {self.log('api')}")
            time.sleep(0.1)
        raise RuntimeError("api did not start")

    def start_dispatcher(self, name: str = "dispatcher", *args: str) -> None:
        self._spawn(name, "dispatcher", *args)

    def start_worker(self, worker_id: str, *args: str) -> None:
        self._spawn(worker_id, "worker", "--id", worker_id, *args)
        self.wait(lambda: any(w["id"] == worker_id and w["status"] == "active" for w in self.workers()))

    def stop(self, name: str, sig: signal.Signals = signal.SIGTERM, timeout: float = 40.0) -> int | None:
        proc = self.procs.pop(name)
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()

    def shutdown(self) -> None:
        order = [n for n in self.procs if n not in ("api",) and not n.startswith("dispatcher")]
        order += [n for n in self.procs if n.startswith("dispatcher")] + [n for n in self.procs if n == "api"]
        for name in order:
            self.stop(name)

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # ---- API client ---------------------------------------------------------------

    def client(self, token: str = TOKEN) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.api_url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    def workers(self) -> list[dict[str, Any]]:
        with self.client() as c:
            return c.get("/workers").json()  # type: ignore[no-any-return]

    def job(self, job_id: str) -> dict[str, Any]:
        with self.client() as c:
            r = c.get(f"/jobs/{job_id}")
            r.raise_for_status()
            return r.json()  # type: ignore[no-any-return]

    def wait_terminal(self, job_ids: Iterable[str], timeout: float = 60.0) -> dict[str, dict[str, Any]]:
        ids = list(job_ids)
        done: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        with self.client() as c:
            while time.monotonic() < deadline:
                for job_id in ids:
                    if job_id not in done:
                        job = c.get(f"/jobs/{job_id}").json()
                        if job["status"] in TERMINAL:
                            done[job_id] = job
                if len(done) == len(ids):
                    return done
                time.sleep(0.2)
        missing = [i for i in ids if i not in done]
        raise AssertionError(f"{len(missing)} jobs not finished in {timeout}s, e.g. {missing[:3]}")

    def wait(self, cond: Any, timeout: float = 30.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if cond():
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{what} not met in {timeout}s")


AUDIT_TIMEOUT_S = 120.0


def audit_log(nats_url: str) -> str | None:
    """Run `jobstream audit verify` on the system's whole log: None if clean, else what it found
    (violations with their witness sequences, or why the log could not be read)."""
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "audit", "verify", "--nats-url", nats_url],
        capture_output=True, text=True, timeout=AUDIT_TIMEOUT_S,
        env={k: v for k, v in os.environ.items() if k != "NATS_SERVICE_PASSWORD"},
    )  # fmt: skip
    if done.returncode == 0:
        return None
    return f"audit verify exited {done.returncode}:\n{done.stdout}{done.stderr}"


def shell_job(script: str, **extra: Any) -> dict[str, Any]:
    return {"name": extra.pop("name", "e2e"), "executor": {"type": "shell", "script": script}, **extra}


def pid_alive(pid: int) -> bool:
    """Running or sleeping; a zombie (killed, not yet reaped by whoever adopted it) is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")
