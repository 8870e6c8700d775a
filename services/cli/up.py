"""`jobstream up`: the embedded default, one supervisor for NATS and every service process."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

from events.streams import provision
from services.runtime import broker_auth, ports
from services.runtime.children import child_kwargs
from services.runtime.connect import connect, jetstream, without_password
from services.runtime.nats_server import NatsServer, ServerError

DEFAULT_API_PORT = 8000
DEFAULT_NATS_PORT = 4222
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 40.0
MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0


class UpError(Exception):
    pass


@dataclass(frozen=True)
class UpOptions:
    host: str = "127.0.0.1"
    port: int | None = None
    nats_port: int | None = None
    nats_url: str | None = None
    data_dir: Path = Path(".jobstream")
    workers: int = 1
    worker_concurrency: int = 4


PORTS_FILE = "ports.json"


def kept_ports(data_dir: Path) -> dict[str, int]:
    """The ports the last `up` on this data dir listened on (unreadable: none)."""
    try:
        kept = json.loads((data_dir / PORTS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in kept.items() if isinstance(v, int)} if isinstance(kept, dict) else {}


def choose_ports(opts: UpOptions, data_dir: Path) -> tuple[int, int | None]:
    """API and embedded NATS ports: the ones given, else last time's, else the defaults; each
    replacement is said, and the choice kept, so URLs and joined workers survive a restart."""
    kept = kept_ports(data_dir)
    try:
        api, note = ports.choose(opts.host, "API", opts.port, kept.get("api"), DEFAULT_API_PORT)
        nats: int | None = None
        notes = [note]
        if not opts.nats_url:
            nats, note = ports.choose(opts.host, "NATS", opts.nats_port, kept.get("nats"), DEFAULT_NATS_PORT)
            notes.append(note)
    except ports.PortTaken as exc:
        raise UpError(str(exc)) from None
    for note in notes:
        if note:
            print(f"note: {note}", file=sys.stderr)
    chosen = {"api": api, **({"nats": nats} if nats is not None else {})}
    (data_dir / PORTS_FILE).write_text(json.dumps({**kept, **chosen}) + "\n")
    return api, nats


SERVICE_USER = broker_auth.SERVICE_USER


def service_password(data_dir: Path) -> str:
    """The embedded server's password for jobstream's own services: NATS_SERVICE_PASSWORD, else
    a new one on every start. It is never written to disk (the server's config holds only its
    bcrypt hash) and reaches the services through their environment, which jobs do not inherit.
    A `nats_password` file left by an older version is removed."""
    (data_dir / "nats_password").unlink(missing_ok=True)
    if os.environ.get("NATS_SERVICE_PASSWORD"):
        return os.environ["NATS_SERVICE_PASSWORD"]
    return secrets.token_urlsafe(24)


LOCK_FILE = "up.lock"


def lock_data_dir(data_dir: Path) -> IO[str]:
    """Hold `<data_dir>/up.lock` (flock) for the whole run, or fail naming who holds it. The lock
    goes with the process (even on SIGKILL), so it is never stale; the file's text (pid, URLs)
    is only what the owner wrote for others to read."""
    path = data_dir / LOCK_FILE
    fh = open(path, "a+")  # noqa: SIM115
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.seek(0)
        text = fh.read()
        fh.close()
        try:
            owner = json.loads(text)
        except ValueError:
            owner = {}
        raise UpError(
            f"the data dir {data_dir} is in use by another `jobstream up` "
            f"(pid {owner.get('pid', '?')}, API {owner.get('api_url', '?')}, "
            f"NATS {owner.get('nats_url', '?')}); stop it first or use another --data-dir"
        ) from None
    _write_owner(fh, {"pid": os.getpid()})
    return fh


def _write_owner(fh: IO[str], owner: dict[str, object]) -> None:
    fh.seek(0)
    fh.truncate()
    fh.write(json.dumps(owner) + "\n")
    fh.flush()


def admin_token(data_dir: Path) -> tuple[str, bool]:
    """ADMIN_TOKEN from the environment, else the one kept in the data dir, else a new one."""
    if os.environ.get("ADMIN_TOKEN"):
        return os.environ["ADMIN_TOKEN"], False
    path = data_dir / "admin_token"
    if path.exists():
        return path.read_text().strip(), False
    token = secrets.token_urlsafe(32)
    path.write_text(token + "\n")
    path.chmod(0o600)
    return token, True


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    restarts: list[float] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, env=self.env, **child_kwargs())

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> None:
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


async def _provision(url: str) -> None:
    nc = await connect(url, "up", max_reconnect_attempts=0)
    try:
        await provision(jetstream(nc))
    finally:
        await nc.close()


def _wait_http(url: str, deadline: float, children: list[Child]) -> None:
    while time.monotonic() < deadline:
        for child in children:
            if child.proc is not None and child.proc.poll() is not None:
                raise UpError(f"{child.name} exited with code {child.proc.returncode} during start-up")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise UpError(f"{url} did not answer in {READY_TIMEOUT_S}s")


def run_up(opts: UpOptions) -> int:
    try:
        return _run(opts)
    except (UpError, ServerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(opts: UpOptions) -> int:
    data_dir = opts.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    lock = lock_data_dir(data_dir)  # before anything else: ports, server, services
    try:
        return _run_locked(opts, data_dir, lock)
    finally:
        lock.close()


def _run_locked(opts: UpOptions, data_dir: Path, lock: IO[str]) -> int:
    token, generated = admin_token(data_dir)
    api_port, nats_port = choose_ports(opts, data_dir)
    server: NatsServer | None = None
    if opts.nats_url:
        nats_url = opts.nats_url
    else:
        assert nats_port is not None
        server = NatsServer(
            data_dir / "nats", opts.host, nats_port, log_file=data_dir / "nats.log",
            users={SERVICE_USER: service_password(data_dir)},
        ).start()  # fmt: skip
        nats_url = server.url_for(SERVICE_USER)
    api_url = f"http://{opts.host}:{api_port}"
    _write_owner(lock, {"pid": os.getpid(), "api_url": api_url, "nats_url": without_password(nats_url)})
    children: list[Child] = []
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        asyncio.run(_provision(nats_url))
        env = {**os.environ, "ADMIN_TOKEN": token, "NATS_URL": nats_url, "PYTHONUNBUFFERED": "1"}
        cli = [sys.executable, "-m", "services.cli"]
        db = str(data_dir / "projection.duckdb")
        children.append(
            Child("api", [*cli, "api", "--host", opts.host, "--port", str(api_port), "--db", db], env)
        )
        children.append(Child("dispatcher", [*cli, "dispatcher"], env))
        children.append(Child("scheduler", [*cli, "scheduler"], env))
        if server is not None and server.proc is not None:
            argv = [
                *cli,
                "broker-auth",
                "--conf",
                str(server.auth_conf),
                "--server-pid",
                str(server.proc.pid),
            ]
            auth_env = {**env, "NATS_SERVICE_PASSWORD": server.users[SERVICE_USER]}
            children.append(Child("broker-auth", argv, auth_env))
        for i in range(1, opts.workers + 1):
            argv = [*cli, "worker", "--id", f"local-{i}", "--max-concurrency", str(opts.worker_concurrency)]
            children.append(Child(f"worker local-{i}", argv, env))
        for child in children:
            child.start()
        _wait_http(f"{api_url}/health", time.monotonic() + READY_TIMEOUT_S, children)
        _banner(api_url, nats_url, token, generated, data_dir, opts)
        while not stopping:
            time.sleep(0.2)
            _supervise(children)
        return 0
    finally:
        _stop_all(children)
        if server is not None:
            server.stop()
        print("jobstream stopped", file=sys.stderr)


def _supervise(children: list[Child]) -> None:
    """Restart a crashed service, but not in a tight loop."""
    now = time.monotonic()
    for child in children:
        if child.alive():
            continue
        recent = [t for t in (child.restarts or []) if now - t < RESTART_WINDOW_S]
        if len(recent) >= MAX_RESTARTS:
            raise UpError(f"{child.name} keeps crashing ({MAX_RESTARTS} restarts in {RESTART_WINDOW_S}s)")
        code = child.proc.returncode if child.proc else None
        print(f"{child.name} exited with code {code}; restarting", file=sys.stderr)
        child.restarts = [*recent, now]
        child.start()


def _stop_all(children: list[Child]) -> None:
    # Workers first, so they can hand their jobs back while the dispatcher still runs.
    workers = [c for c in children if c.name.startswith("worker")]
    others = [c for c in children if not c.name.startswith("worker")]
    for group in (workers, others):
        for child in group:
            child.terminate()
        for child in group:
            child.wait(STOP_TIMEOUT_S)


def _banner(
    api_url: str, nats_url: str, token: str, generated: bool, data_dir: Path, opts: UpOptions
) -> None:
    kept = data_dir / "admin_token"
    source = f"generated, kept in {kept}" if generated else "from ADMIN_TOKEN or the data dir"
    server = without_password(nats_url)  # the service login is for jobstream's own processes only
    lines = [
        "",
        "jobstream is up",
        f"  API        {api_url}/api/v1   (docs: {api_url}/docs)",
        f"  NATS       {server}",
        f"  data dir   {data_dir}",
        f"  admin token {token}   ({source})",
        f"  workers    {opts.workers} local (concurrency {opts.worker_concurrency})",
        "",
        "Join another worker to this system with a domain token",
        "(`jobstream domains create <domain>` or `jobstream domains add-token <domain>` prints one):",
        f"  NATS_URL={server} WORKER_DOMAIN=<domain> WORKER_DOMAIN_TOKEN=jst_… jobstream worker --id w2",
        "Use the CLI:",
        f"  export JOBSTREAM_URL={api_url} JOBSTREAM_TOKEN={token}",
        "  jobstream submit --name hello --shell 'echo hello' --wait",
        "",
        "Ctrl-C stops everything.",
    ]
    print("\n".join(lines), flush=True)
