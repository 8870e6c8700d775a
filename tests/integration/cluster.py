"""A real JetStream cluster on loopback (n1..n3), for tests that need R3."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from nats.js import api

from services.runtime.connect import connect, jetstream
from services.runtime.nats_server import ClusterNode, NatsServer
from services.runtime.ports import free_port

READY_TIMEOUT_S = 30.0


def start_cluster(tmp: Path, nodes: int = 3) -> list[NatsServer]:
    routes = tuple(free_port() for _ in range(nodes))
    servers = [
        NatsServer(
            tmp / f"nats-n{i + 1}", port=free_port(), log_file=tmp / f"nats-n{i + 1}.log",
            cluster=ClusterNode(f"n{i + 1}", routes[i], routes),
        )
        for i in range(nodes)
    ]  # fmt: skip
    return start_all(servers)


def start_all(servers: list[NatsServer]) -> list[NatsServer]:
    """Start every node, or none: one that fails stops those already started."""
    started: list[NatsServer] = []
    try:
        for server in servers:
            started.append(server.start())
    except Exception:
        stop_cluster(started)
        raise
    return servers


def stop_cluster(servers: list[NatsServer]) -> None:
    for server in servers:
        server.stop()


def urls(servers: list[NatsServer]) -> str:
    return ",".join(s.url for s in servers)


async def wait_jetstream(url: str, replicas: int) -> None:
    """Until the cluster can hold an R`replicas` stream: until its meta group has a leader and
    knows every peer, such a stream is refused (503, or insufficient resources)."""
    nc = await connect(url, "cluster-wait")
    try:
        js = jetstream(nc)
        deadline = time.monotonic() + READY_TIMEOUT_S
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                await js.add_stream(
                    api.StreamConfig(name="PROBE", subjects=["probe.>"], num_replicas=replicas)
                )
                await js.delete_stream("PROBE")
                return
            except Exception as exc:
                last = exc
            await asyncio.sleep(0.3)
        raise TimeoutError(f"the cluster at {url} cannot hold R{replicas} after {READY_TIMEOUT_S}s: {last}")
    finally:
        await nc.close()
