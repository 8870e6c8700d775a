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
from nats.errors import Error as NatsError

from events.streams import REPLICAS_ENV, provision, replicas_from_env
from services.runtime import broker_auth, ports
from services.runtime.children import child_kwargs
from services.runtime.connect import NatsUrlError, connect, jetstream, nats_servers, without_password
from services.runtime.lifecycle import STOP_GRACE_S
from services.runtime.nats_server import ClusterNode, NatsServer, ServerError
from services.worker.settings import DEFAULT_GRACE_S

DEFAULT_API_PORT = 8000
DEFAULT_NATS_PORT = 4222
READY_TIMEOUT_S = 60.0
# Longer than a worker's own stop budget (its drain grace, then STOP_GRACE_S for hand-backs
# and `stopped`), so `up` never cuts a drain short with SIGKILL and leaves jobs behind.
STOP_TIMEOUT_S = DEFAULT_GRACE_S + STOP_GRACE_S + 20.0
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
    replicas: int | None = None  # None: JOBSTREAM_REPLICAS, else 1 (3 for a cluster)
    cluster: int = 1  # embedded nats-server nodes


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


async def _provision(url: str, replicas: int, deadline: float) -> None:
    """Provision, retrying until `deadline`: a new cluster refuses JetStream requests (503) until
    its nodes have met and elected a leader."""
    nc = await connect(url, "up", max_reconnect_attempts=0)
    try:
        while True:
            try:
                await provision(jetstream(nc), replicas=replicas)
                return
            except (NatsError, TimeoutError) as exc:
                if time.monotonic() >= deadline:
                    raise UpError(f"cannot create the streams (replicas {replicas}): {exc}") from exc
            await asyncio.sleep(0.5)
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


def _replicas(opts: UpOptions) -> int:
    """--replicas, else JOBSTREAM_REPLICAS, else 1 (3 for a cluster); every service gets the same."""
    replicas = opts.replicas
    if replicas is None and os.environ.get(REPLICAS_ENV, "").strip():
        try:
            replicas = replicas_from_env()
        except ValueError as exc:
            raise UpError(str(exc)) from None
    if replicas is None:
        replicas = min(3, opts.cluster) if opts.cluster > 1 else 1
    if not opts.nats_url and replicas > opts.cluster:
        raise UpError(f"{replicas} replicas need as many NATS nodes: start with --cluster {max(3, replicas)}")
    return replicas


def _check_store_kind(opts: UpOptions, data_dir: Path) -> None:
    """A data dir holds a single node's store or a cluster's: switching would start empty."""
    single, clustered = (data_dir / "nats" / "jetstream").exists(), (data_dir / "nats-n1").exists()
    if opts.cluster > 1 and single:
        raise UpError(f"{data_dir} holds a single-node store (nats/); --cluster would start empty there")
    if opts.cluster == 1 and clustered:
        raise UpError(f"{data_dir} holds a cluster's stores (nats-n1/…); start it with --cluster")


def cluster_ports(opts: UpOptions, data_dir: Path, first: int) -> tuple[list[int], list[int]]:
    """Client ports of nodes n1..nN (n1's is the NATS port) and their route ports: last time's
    when free, else new ones; kept in ports.json like the others."""
    kept = kept_ports(data_dir)
    used = {first}

    def pick(key: str) -> int:
        port = kept.get(key)
        for _ in range(100):
            if port is not None and port not in used and ports.port_is_free(opts.host, port):
                break
            port = ports.free_port(opts.host)
        assert port is not None
        used.add(port)
        kept[key] = port
        return port

    clients = [first, *(pick(f"nats_n{i}") for i in range(2, opts.cluster + 1))]
    routes = [pick(f"route_n{i}") for i in range(1, opts.cluster + 1)]
    (data_dir / PORTS_FILE).write_text(json.dumps(kept) + "\n")
    return clients, routes


def embedded_servers(opts: UpOptions, data_dir: Path, nats_port: int) -> list[NatsServer]:
    """The nats-server(s) `up` runs: one, or a cluster n1..nN on `opts.host`, a store each, one
    logins file for all (broker-auth writes it and reloads every node)."""
    users = {SERVICE_USER: service_password(data_dir)}
    if opts.cluster == 1:
        return [
            NatsServer(data_dir / "nats", opts.host, nats_port, log_file=data_dir / "nats.log", users=users)
        ]
    clients, routes = cluster_ports(opts, data_dir, nats_port)
    return [
        NatsServer(
            data_dir / f"nats-n{i}", opts.host, clients[i - 1], users=users,
            log_file=data_dir / f"nats-n{i}.log",
            cluster=ClusterNode(f"n{i}", routes[i - 1], tuple(routes), data_dir / "nats-auth.conf"),
        )
        for i in range(1, opts.cluster + 1)
    ]  # fmt: skip


def _run_locked(opts: UpOptions, data_dir: Path, lock: IO[str]) -> int:
    if opts.nats_url and opts.cluster > 1:
        raise UpError("--cluster starts NATS nodes of its own; it does not go with --nats-url")
    replicas = _replicas(opts)
    _check_store_kind(opts, data_dir)
    token, generated = admin_token(data_dir)
    api_port, nats_port = choose_ports(opts, data_dir)
    servers: list[NatsServer] = []
    if opts.nats_url:
        try:
            nats_servers(opts.nats_url, "--nats-url")
        except NatsUrlError as exc:
            raise UpError(str(exc)) from None
    else:
        assert nats_port is not None
        servers = embedded_servers(opts, data_dir, nats_port)
    children: list[Child] = []
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        for server in servers:
            server.start()
        nats_url = opts.nats_url or ",".join(s.url_for(SERVICE_USER) for s in servers)
        api_url = f"http://{opts.host}:{api_port}"
        _write_owner(lock, {"pid": os.getpid(), "api_url": api_url, "nats_url": without_password(nats_url)})
        asyncio.run(_provision(nats_url, replicas, time.monotonic() + READY_TIMEOUT_S))
        env = {**os.environ, "ADMIN_TOKEN": token, "NATS_URL": nats_url, "PYTHONUNBUFFERED": "1"}
        env[REPLICAS_ENV] = str(replicas)
        cli = [sys.executable, "-m", "services.cli"]
        db = str(data_dir / "projection.duckdb")
        children.append(
            Child("api", [*cli, "api", "--host", opts.host, "--port", str(api_port), "--db", db], env)
        )
        children.append(Child("dispatcher", [*cli, "dispatcher"], env))
        children.append(Child("scheduler", [*cli, "scheduler"], env))
        if servers:
            argv = [*cli, "broker-auth", "--conf", str(servers[0].auth_conf)]
            for server in servers:
                argv += ["--server-pid-file", str(server.pid_file)]
            auth_env = {**env, "NATS_SERVICE_PASSWORD": servers[0].users[SERVICE_USER]}
            children.append(Child("broker-auth", argv, auth_env))
        for i in range(1, opts.workers + 1):
            argv = [*cli, "worker", "--id", f"local-{i}", "--max-concurrency", str(opts.worker_concurrency)]
            children.append(Child(f"worker local-{i}", argv, env))
        for child in children:
            child.start()
        _wait_http(f"{api_url}/health", time.monotonic() + READY_TIMEOUT_S, children)
        _banner(api_url, nats_url, token, generated, data_dir, opts)
        server_restarts: dict[str, list[float]] = {}
        while not stopping:
            time.sleep(0.2)
            for server in servers:
                label = f"nats-server {server.cluster.server_name}" if server.cluster else "nats-server"
                server_restarts[label] = _supervise_server(server, server_restarts.get(label, []), label)
            _supervise(children)
        return 0
    finally:
        _stop_all(children)
        for server in servers:
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


def _exit_cause(code: int | None) -> str:
    if code is None:
        return "unknown status"
    return f"signal {-code}" if code < 0 else f"code {code}"


def _supervise_server(server: NatsServer, restarts: list[float], label: str = "nats-server") -> list[float]:
    """Restart a dead embedded nats-server on the same store, port and logins (services
    reconnect by themselves; broker-auth follows its pid file); give up when it keeps dying.
    Returns the restart times still inside the window."""
    if server.proc is None or server.proc.poll() is None:
        return restarts
    now = time.monotonic()
    recent = [t for t in restarts if now - t < RESTART_WINDOW_S]
    cause = _exit_cause(server.proc.returncode)
    if len(recent) >= MAX_RESTARTS:
        raise UpError(
            f"{label} exited ({cause}) and keeps crashing ({MAX_RESTARTS} restarts in "
            f"{RESTART_WINDOW_S:.0f} s); stopping. See {server.log_file or 'its log'}"
        )
    recent.append(now)
    try:
        server.start(keep_logins=True)
    except ServerError as exc:
        print(f"{label} exited ({cause}); restart {len(recent)} of {MAX_RESTARTS} failed: {exc}",
              file=sys.stderr)  # fmt: skip
        return recent
    print(
        f"{label} exited ({cause}); restarted it on the same store "
        f"(restart {len(recent)} of {MAX_RESTARTS} in {RESTART_WINDOW_S:.0f} s)",
        file=sys.stderr,
        flush=True,
    )
    return recent


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
