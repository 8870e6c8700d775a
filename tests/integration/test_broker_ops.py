"""The embedded nats-server's settings, checked on the live server, and stream provisioning."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from nats.js import api

from events.streams import (
    EVENTS_STREAM,
    HEARTBEATS_STREAM,
    LEASE_TTL_S,
    LEASES_KV_STREAM,
    jobstream_streams,
    logs_stream,
    provision,
    provision_logs,
    set_replicas,
)
from services.runtime.connect import connect, jetstream
from services.runtime.nats_server import NatsServer
from services.runtime.ports import free_port
from tests.integration.cluster import start_cluster, stop_cluster, urls, wait_jetstream


def _varz(port: int) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/varz", timeout=5) as reply:
        return json.loads(reply.read())  # type: ignore[no-any-return]


def test_the_server_fsyncs_before_acknowledging(tmp_path: Path) -> None:
    monitor = free_port()
    server = NatsServer(
        tmp_path / "nats",
        port=free_port(),
        extra_args=["-m", str(monitor)],
        users={"jobstream": "pw-0123456789"},
    ).start()
    try:
        jetstream = _varz(monitor)["jetstream"]
        assert isinstance(jetstream, dict)
        assert jetstream["config"]["sync_always"] is True
        # The logins are still read from their own file (included), and the pid is kept.
        assert f'include "{server.auth_conf.name}"' in server.config_file.read_text()
        assert server.proc is not None and server.pid_file.read_text().strip() == str(server.proc.pid)
    finally:
        server.stop()


async def test_provisioning_keeps_what_it_does_not_declare_and_skips_unchanged_streams(
    own_nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    nc = await connect(own_nats_server.url, "test")
    js = jetstream(nc)
    try:
        await provision(js, replicas=1)
        await provision_logs(js, ["blue"], replicas=1)
        info = await js.stream_info(EVENTS_STREAM)
        await js.update_stream(dataclasses.replace(info.config, description="an operator's note"))
        sent: list[str | None] = []
        real_update = js.update_stream

        async def spy(config: api.StreamConfig, **kw: object) -> api.StreamInfo:
            sent.append(config.name)
            return await real_update(config)

        monkeypatch.setattr(js, "update_stream", spy)
        await provision(js, replicas=1)
        await provision_logs(js, ["blue"], replicas=1)
        assert sent == []  # nothing differs: no stream is rewritten on a service start
        after = await js.stream_info(EVENTS_STREAM)
        assert after.config.description == "an operator's note" and after.config.num_replicas == 1
        # A declared setting changed by hand is put back, the rest of the stream as it was.
        await real_update(dataclasses.replace(after.config, allow_direct=False))
        await provision(js, replicas=1)
        assert sent == [EVENTS_STREAM]
        fixed = await js.stream_info(EVENTS_STREAM)
        assert fixed.config.allow_direct is True and fixed.config.description == "an operator's note"
        assert fixed.state.messages == info.state.messages
        leases = await js.stream_info(LEASES_KV_STREAM)
        assert leases.config.num_replicas == 1 and leases.config.max_age == LEASE_TTL_S
        # A bucket made with an older, shorter TTL (5 s: shorter than an election) gets ours.
        await real_update(dataclasses.replace(leases.config, max_age=5.0, duplicate_window=5.0))
        await provision(js, replicas=1)
        assert (await js.stream_info(LEASES_KV_STREAM)).config.max_age == LEASE_TTL_S
        names = [s.config.name for s in await jobstream_streams(js)]
        assert names == [EVENTS_STREAM, HEARTBEATS_STREAM, logs_stream("blue"), LEASES_KV_STREAM]
        # R3 cannot be had on one node: the server refuses, and provisioning does not hide it.
        with pytest.raises(Exception, match=r"(?i)insufficient resources|replicas"):
            await provision(js, replicas=3, deadline_s=1.0)
    finally:
        await nc.close()


async def _provisioned(url: str) -> None:
    nc = await connect(url, "test")
    try:
        await provision(jetstream(nc), replicas=1)
    finally:
        await nc.close()


def test_the_replicas_command_says_when_nothing_changes(own_nats_server: NatsServer) -> None:
    env = {**os.environ, "NATS_URL": own_nats_server.url}
    empty = subprocess.run(
        [sys.executable, "-m", "services.cli", "streams", "replicas", "1"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert empty.returncode == 5 and "no jobstream streams" in empty.stderr
    asyncio.run(_provisioned(own_nats_server.url))
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "streams", "replicas", "1"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "has 1 replica(s) already" in done.stdout
    refused = subprocess.run(
        [sys.executable, "-m", "services.cli", "streams", "replicas", "3"],
        env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert refused.returncode == 2 and "EVENTS  1 -> 3" in refused.stdout and "--yes" in refused.stderr


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[NatsServer]]:
    servers = start_cluster(tmp_path)
    yield servers
    stop_cluster(servers)


async def test_r3_survives_a_service_start_with_replicas_1_and_only_the_command_lowers_it(
    cluster: list[NatsServer],
) -> None:
    url = urls(cluster)
    await wait_jetstream(url, 3)
    nc = await connect(url, "test")
    js = jetstream(nc)
    try:
        await provision(js, replicas=3)
        await provision_logs(js, ["blue"], replicas=3)
        streams = await jobstream_streams(js)
        assert {s.config.name: s.config.num_replicas for s in streams} == {
            EVENTS_STREAM: 3, HEARTBEATS_STREAM: 3, logs_stream("blue"): 3, LEASES_KV_STREAM: 3,
        }  # fmt: skip
        # A service started with the default (1) provisions again: nothing goes back to R1.
        await provision(js, replicas=1)
        await provision_logs(js, ["blue"], replicas=1)
        assert all(s.config.num_replicas == 3 for s in await jobstream_streams(js))
        # Lowering is explicit.
        await set_replicas(js, 1, await jobstream_streams(js))
        assert all(s.config.num_replicas == 1 for s in await jobstream_streams(js))
    finally:
        await nc.close()
