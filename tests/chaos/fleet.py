"""A jobstream fleet on a 3-node JetStream cluster, for chaos tests: real processes, loopback
only, a bounded load whose every execution is written to a ledger outside NATS."""

from __future__ import annotations

import asyncio
import itertools
import random
import subprocess
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from events.streams import EVENTS_STREAM
from services.runtime.connect import connect, jetstream
from services.runtime.nats_server import ClusterNode, NatsServer
from services.runtime.ports import free_port
from tests.chaos.proxy import Proxies, Proxy
from tests.e2e.system import System
from tests.integration.cluster import start_all, urls

CANCEL_SHARE = 0.1  # of the jobs, cancelled by their "user" right after submitting
SUBMIT_DEADLINE_S = 90.0  # a client retries one submission (same key) this long at most
CUT_WORKER = "w1"  # the worker a partition scenario cuts off (its links are its own)


@dataclass
class Fleet(System):
    servers: list[NatsServer] = field(default_factory=list)
    monitor_ports: dict[str, int] = field(default_factory=dict)
    # With a partitionable cluster: what the services dial instead of the servers themselves.
    net: Network | None = None
    env_for: dict[str, dict[str, str]] = field(default_factory=dict)  # per process name

    def env(self) -> dict[str, str]:
        url = self.net.client_url() if self.net else urls(self.servers)
        return super().env() | {"NATS_URL": url, "JOBSTREAM_REPLICAS": "3"} | self.extra_env

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        extra = self.env_for.get(name)
        if extra is None:
            return super()._spawn(name, *args)
        saved = self.extra_env
        self.extra_env = {**saved, **extra}
        try:
            return super()._spawn(name, *args)
        finally:
            self.extra_env = saved

    def start_scheduler(self, name: str) -> None:
        self._spawn(name, "scheduler")

    # ---- the cluster ----------------------------------------------------------------

    def node(self, name: str) -> NatsServer:
        [server] = [s for s in self.servers if s.cluster is not None and s.cluster.server_name == name]
        return server

    def leader(self, stream: str = EVENTS_STREAM) -> str:
        """The name of the node leading `stream` now (after an election: once there is one)."""

        async def ask() -> str:
            nc = await connect(urls(self.servers), "chaos-probe", max_reconnect_attempts=2)
            try:
                info = await jetstream(nc).stream_info(stream)
                assert info.cluster is not None and info.cluster.leader, f"{stream} has no leader"
                return str(info.cluster.leader)
            finally:
                await nc.close()

        deadline = time.monotonic() + 30
        while True:
            try:
                return asyncio.run(ask())
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def wait_healthy(self, server: NatsServer, timeout: float = 60.0) -> None:
        """Until the node says its JetStream is up (/healthz, as a readiness probe asks)."""
        port = self.monitor_ports[server.url]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz?js-enabled-only=true", timeout=2).is_success:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"node {server.url} not healthy in {timeout}s")

    def node_states(self, stream: str = EVENTS_STREAM) -> dict[str, tuple[int, int, int]]:
        """(messages, first seq, last seq) of `stream` as each node's own replica holds it (/jsz)."""
        out = {}
        for server in self.servers:
            port = self.monitor_ports[server.url]
            body = httpx.get(f"http://127.0.0.1:{port}/jsz?streams=true", timeout=5).json()
            for account in body.get("account_details", []):
                for detail in account.get("stream_detail", []):
                    if detail["name"] == stream:
                        st = detail["state"]
                        out[server.url] = (int(st["messages"]), int(st["first_seq"]), int(st["last_seq"]))
        return out


@dataclass
class Network:
    """The proxies between the nodes (routes) and in front of them (clients), and one more set
    in front of them for a single worker: each a link that a scenario can cut."""

    proxies: Proxies
    routes: dict[tuple[int, int], Proxy]  # (from node, to node) -> the proxy node i dials for j
    clients: list[Proxy]  # node i's client port, as the services reach it
    worker_clients: list[Proxy]  # the same, for the one worker a scenario cuts off

    def client_url(self) -> str:
        return ",".join(f"nats://127.0.0.1:{p.port}" for p in self.clients)

    def worker_url(self) -> str:
        return ",".join(f"nats://127.0.0.1:{p.port}" for p in self.worker_clients)

    def node_links(self, i: int) -> list[Proxy]:
        """Everything that reaches node i: its routes both ways and its clients."""
        routes = [p for (a, b), p in self.routes.items() if i in (a, b)]
        return [*routes, self.clients[i], self.worker_clients[i]]


def start_partitionable_cluster(
    tmp: Path, nodes: int = 3
) -> tuple[list[NatsServer], dict[str, int], Network]:
    """Like start_monitored_cluster, but every route and client connection passes a proxy."""
    proxies = Proxies()
    route_ports = [free_port() for _ in range(nodes)]
    client_ports = [free_port() for _ in range(nodes)]
    monitors = [free_port() for _ in range(nodes)]
    routes = {(i, j): proxies.add(route_ports[j]) for i in range(nodes) for j in range(nodes) if i != j}
    net = Network(
        proxies, routes, [proxies.add(p) for p in client_ports], [proxies.add(p) for p in client_ports]
    )
    servers = []
    for i in range(nodes):
        dials = tuple(routes[(i, j)].port for j in range(nodes) if j != i)
        node = ClusterNode(f"n{i + 1}", route_ports[i], dials)
        servers.append(
            NatsServer(
                tmp / f"nats-n{i + 1}", port=client_ports[i], log_file=tmp / f"nats-n{i + 1}.log",
                cluster=node, extra_args=["-m", str(monitors[i])],
            )
        )  # fmt: skip
    try:
        start_all(servers)
    except Exception:
        proxies.close()
        raise
    return servers, {s.url: m for s, m in zip(servers, monitors, strict=True)}, net


def start_monitored_cluster(tmp: Path, nodes: int = 3) -> tuple[list[NatsServer], dict[str, int]]:
    """n1..n3 on loopback, each with a monitoring port (for /jsz: what each replica holds)."""
    routes = tuple(free_port() for _ in range(nodes))
    monitors = [free_port() for _ in range(nodes)]
    servers = [
        NatsServer(
            tmp / f"nats-n{i + 1}", port=free_port(), log_file=tmp / f"nats-n{i + 1}.log",
            cluster=ClusterNode(f"n{i + 1}", routes[i], routes), extra_args=["-m", str(monitors[i])],
        )
        for i in range(nodes)
    ]  # fmt: skip
    return start_all(servers), {s.url: m for s, m in zip(servers, monitors, strict=True)}


# ---- load ---------------------------------------------------------------------------


@dataclass
class Load:
    """Jobs submitted with an Idempotency-Key and retried with the same key until answered."""

    fleet: Fleet
    ledger: Path
    jobs: int
    seed: int = 7
    keys: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # key -> job ids seen
    refused: list[tuple[float, float]] = field(default_factory=list)  # windows of failed submits
    submitted_at: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    cancelled: set[str] = field(default_factory=set)  # jobs a user asked to cancel
    _thread: threading.Thread | None = None

    def script(self, sleep_s: float) -> str:
        line = '"$JOBSTREAM_JOB_ID $JOBSTREAM_ATTEMPT'
        return (
            f'echo {line} start $(date +%s.%N) {sleep_s:.2f}" >> {self.ledger}; sleep {sleep_s:.2f}; '
            f'echo {line} end $(date +%s.%N)" >> {self.ledger}'
        )

    def submit_one(self, c: httpx.Client, rng: random.Random, i: int) -> None:
        key = f"chaos-{uuid.uuid4().hex}"
        body = {
            "name": f"chaos-{i % 5}",
            "executor": {"type": "shell", "script": self.script(rng.uniform(0.1, 1.5))},
        }
        deadline = time.monotonic() + SUBMIT_DEADLINE_S
        failing_since: float | None = None
        while time.monotonic() < deadline:
            try:
                r = c.post("/jobs", json=body, headers={"Idempotency-Key": key})
                if r.status_code in (200, 201):
                    job_id = r.json()["id"]
                    self.keys[key].add(job_id)
                    self.submitted_at.setdefault(job_id, time.monotonic())
                    if failing_since is not None:
                        self.refused.append((failing_since, time.monotonic()))
                    if rng.random() < CANCEL_SHARE:
                        self.cancel(c, job_id)
                    return
                if r.status_code < 500 and r.status_code != 429:
                    self.errors.append(f"submit refused {r.status_code}: {r.text[:200]}")
                    return
            except httpx.HTTPError:
                pass
            failing_since = failing_since or time.monotonic()
            time.sleep(0.2)
        self.errors.append(f"submit with key {key} not answered in {SUBMIT_DEADLINE_S}s")

    def cancel(self, c: httpx.Client, job_id: str) -> None:
        """A user's cancel, retried until answered: 200 (cancelled or on its way) or 409 (it
        had ended already)."""
        self.cancelled.add(job_id)
        deadline = time.monotonic() + SUBMIT_DEADLINE_S
        while time.monotonic() < deadline:
            try:
                r = c.post(f"/jobs/{job_id}/cancel", json={"reason": "chaos"})
                if r.status_code in (200, 409):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.errors.append(f"cancel of {job_id} not answered in {SUBMIT_DEADLINE_S}s")

    def run(self, rate_per_s: float) -> None:
        rng = random.Random(self.seed)
        with self.fleet.client() as c:
            for i in range(self.jobs):
                t0 = time.monotonic()
                self.submit_one(c, rng, i)
                time.sleep(max(0.0, 1 / rate_per_s - (time.monotonic() - t0)))

    def start(self, rate_per_s: float) -> None:
        self._thread = threading.Thread(target=self.run, args=(rate_per_s,), daemon=True)
        self._thread.start()

    def join(self, timeout: float) -> None:
        assert self._thread is not None
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the load did not finish"


def ledger_overlaps(ledger: Path) -> list[str]:
    """Executions of one job that overlap in time (two attempts running at once).

    An execution killed before its end line (its worker was killed, or it was cancelled) ended
    at the latest when its sleep would have: that bound is used for it."""
    spans: dict[str, dict[str, list[float]]] = defaultdict(dict)
    for raw in ledger.read_text().splitlines():
        job, attempt, what, at, *planned = raw.split()
        span = spans[job].setdefault(attempt, [float("inf"), float("inf")])
        if what == "start":
            span[0] = float(at)
            span[1] = min(span[1], float(at) + float(planned[0])) if planned else span[1]
        else:
            span[1] = float(at)
    out = []
    for job, attempts in spans.items():
        ordered = sorted(attempts.items(), key=lambda kv: kv[1][0])
        for (a1, s1), (a2, s2) in itertools.pairwise(ordered):
            if s2[0] < s1[1]:
                out.append(f"job {job}: attempt {a2} started at {s2[0]} before attempt {a1} ended at {s1[1]}")
    return out


def job_events(fleet: Fleet, job_id: str) -> list[dict[str, Any]]:
    with fleet.client() as c:
        r = c.get(f"/jobs/{job_id}/events")
        r.raise_for_status()
        return r.json()  # type: ignore[no-any-return]
