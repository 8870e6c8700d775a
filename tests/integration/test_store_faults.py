"""The event store under real faults: lost acks, a stalled server, a restart, real conflicts.

Every test runs against a real nats-server; faults are real too (SIGSTOP, stop and start).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.js.api import StreamConfig

from events import subjects
from events.ids import new_id
from events.job import (
    JobSpec,
    JobState,
    ShellExecutor,
    Submitted,
    decide_dispatch,
    decide_requeue,
    decide_start,
    evolve,
)
from events.store import (
    APPEND_DEADLINE_S,
    ATTEMPT_TIMEOUT_S,
    Append,
    Appended,
    AppendUncertain,
    EventStore,
    WrongExpectedSequence,
    job_append,
)
from events.streams import EVENTS_STREAM, provision
from services.runtime.connect import connect, jetstream
from services.runtime.nats_server import NatsServer
from services.runtime.ports import free_port

SPEC = JobSpec(name="t", executor=ShellExecutor(script="true"))


def submit(job_id: str, domain: str = "faults") -> Submitted:
    return Submitted(domain=domain, actor="test", job_id=job_id, spec=SPEC)


async def dispatched_job(store: EventStore, worker: str = "w1") -> tuple[JobState, int]:
    """A job dispatched to `worker`: its state and the dispatch's sequence."""
    job_id = new_id()
    created = await store.append(job_append(submit(job_id), 0))
    state, _ = await store.read_job("faults", job_id)
    assert state is not None
    seq = (await store.append(job_append(decide_dispatch(state, worker), created.seq))).seq
    state, _ = await store.read_job("faults", job_id)
    assert state is not None
    return state, seq


async def submitted_per_job(store: EventStore) -> Counter[str]:
    """How many `submitted` events each job has in the whole log."""
    stored = await store.read(subjects.job_type_all("faults", "submitted"))
    return Counter(s.event.job_id for s in stored if isinstance(s.event, Submitted))


@pytest.fixture
async def own_nc(own_nats_server: NatsServer) -> AsyncIterator[NATS]:
    conn = await connect(own_nats_server.url, "test-faults")
    await provision(jetstream(conn))
    yield conn
    await conn.close()


@pytest.fixture
def own_store(own_nc: NATS) -> EventStore:
    return EventStore(own_nc, jetstream(own_nc))


@pytest.fixture
def paused(own_nats_server: NatsServer) -> Iterator[NatsServer]:
    """The server, to be SIGSTOPped by the test; it is always SIGCONTed afterwards."""
    try:
        yield own_nats_server
    finally:
        assert own_nats_server.proc is not None
        os.kill(own_nats_server.proc.pid, signal.SIGCONT)


# ---- (a) a retried append that already landed is a duplicate ------------------------------


async def test_server_checks_the_fence_before_the_msg_id(nc: NATS) -> None:
    """Why the store resolves conflicts itself: nats-server answers a resent fenced publish whose
    first copy landed with "wrong last sequence" (10071), not with `duplicate: true`."""
    job_id = new_id()
    headers = {
        "Nats-Expected-Last-Subject-Sequence": "0",
        "Nats-Expected-Last-Subject-Sequence-Subject": subjects.job_all("faults", job_id),
        "Nats-Msg-Id": f"probe-{job_id}",
    }
    subject = subjects.job("faults", job_id, "submitted")
    first = await nc.request(subject, b"{}", headers=headers, timeout=5)
    again = await nc.request(subject, b"{}", headers=headers, timeout=5)
    assert b'"seq"' in first.data and b"error" not in first.data
    assert b"10071" in again.data


async def test_fenced_retry_with_the_same_msg_id_is_a_duplicate(store: EventStore) -> None:
    job_id = new_id()
    item = job_append(submit(job_id), 0, msg_id=f"submit:faults:{job_id}")
    first = await store.append(item)
    # Sent again, as after a lost ack: the fence (0) is stale now, yet it is our own copy.
    again = await store.append(job_append(submit(job_id), 0, msg_id=f"submit:faults:{job_id}"))
    assert again == Appended(first.seq, duplicate=True)
    assert len(await store.read(subjects.job_all("faults", job_id))) == 1


async def test_started_gets_a_default_msg_id_and_a_retry_is_a_duplicate(store: EventStore) -> None:
    state, dispatched = await dispatched_job(store)
    start = job_append(decide_start(state, "w1", 1), dispatched)
    assert start.msg_id == f"faults.{state.id}.1.started"
    first = await store.append(start)
    # A redelivered assignment builds a new Started (new event id) for the same attempt.
    again = await store.append(job_append(decide_start(state, "w1", 1), dispatched))
    assert again == Appended(first.seq, duplicate=True)
    events = await store.read(subjects.job_all("faults", state.id))
    assert [e.event.type for e in events] == ["submitted", "dispatched", "started"]


async def test_duplicate_is_found_even_after_later_events(store: EventStore) -> None:
    """The landed copy need not be the scope's last event: whatever followed it, it is ours."""
    state, dispatched = await dispatched_job(store)
    started = await store.append(job_append(decide_start(state, "w1", 1), dispatched))
    now, _ = await store.read_job("faults", state.id)
    assert now is not None
    await store.append(job_append(decide_requeue(now, "w1", 1, "test"), started.seq))
    again = await store.append(job_append(decide_start(state, "w1", 1), dispatched))
    assert again == Appended(started.seq, duplicate=True)


async def test_unfenced_retry_with_the_same_msg_id_is_a_duplicate(store: EventStore) -> None:
    job_id = new_id()
    item = Append(subjects.job("faults", job_id, "submitted"), submit(job_id), msg_id=f"u-{job_id}")
    first = await store.append(item)
    again = await store.append(item)
    assert again == Appended(first.seq, duplicate=True)


async def test_duplicate_through_the_read_proxy(nc: NATS, store: EventStore) -> None:
    """A domain-token store (reads via `rd.…`, no headers) still knows its own landed copy."""
    from services.broker.reads import serve_reads

    sub = await serve_reads(nc, store)
    try:
        proxied = EventStore(nc, store.js, via_proxy=True)
        state, dispatched = await dispatched_job(store)
        item = job_append(decide_start(state, "w1", 1), dispatched)
        first = await proxied.append(item)
        assert await proxied.append(item) == Appended(first.seq, duplicate=True)
        # A redelivery's new Started (new event id): known by its default msg id, derived.
        again = await proxied.append(job_append(decide_start(state, "w1", 1), dispatched))
        assert again == Appended(first.seq, duplicate=True)
        with pytest.raises(WrongExpectedSequence):  # a different decision is still refused
            await proxied.append(job_append(decide_requeue(state, "w1", 1, "test"), dispatched))
    finally:
        await sub.unsubscribe()


# ---- (d) a real conflict stays a conflict -------------------------------------------------


async def test_real_conflicts_are_still_wrong_expected_sequence(store: EventStore) -> None:
    state, dispatched = await dispatched_job(store)
    # Another dispatcher placing the same attempt elsewhere: no msg id, a plain conflict.
    first = (await store.read(subjects.job_all("faults", state.id)))[0]
    pending = evolve(None, first.event)  # type: ignore[arg-type]
    assert pending is not None
    with pytest.raises(WrongExpectedSequence):
        await store.append(job_append(decide_dispatch(pending, "w2"), first.seq))
    # The job was taken back before the worker started it: its `started` (with a msg id) is
    # refused, not mistaken for a duplicate of the other decision.
    requeued = await store.append(job_append(decide_requeue(state, "w1", 1, "lost"), dispatched))
    with pytest.raises(WrongExpectedSequence):
        await store.append(job_append(decide_start(state, "w1", 1), dispatched))
    _, last = await store.read_job("faults", state.id)
    assert last == requeued.seq


async def test_racing_appends_one_wins_the_rest_conflict(store: EventStore) -> None:
    job_id = new_id()
    results = await store.append_many([job_append(submit(job_id), 0) for _ in range(8)])
    assert sum(isinstance(r, Appended) for r in results) == 1
    assert sum(isinstance(r, WrongExpectedSequence) for r in results) == 7


# ---- (b) a stalled server costs one deadline, not one per item ----------------------------


async def test_append_many_against_a_stalled_server_takes_one_deadline(
    paused: NatsServer, own_store: EventStore
) -> None:
    ids = [new_id() for _ in range(8)]
    items = [job_append(submit(i), 0, msg_id=f"submit:faults:{i}") for i in ids]
    assert paused.proc is not None
    os.kill(paused.proc.pid, signal.SIGSTOP)
    started = time.monotonic()
    results = await own_store.append_many(items, deadline_s=1.0)
    elapsed = time.monotonic() - started
    assert elapsed < 3.0, elapsed
    assert all(isinstance(r, AppendUncertain) and r.maybe_landed for r in results), results
    os.kill(paused.proc.pid, signal.SIGCONT)
    # The buffered publishes may land now (ghost writes); the same appends again are safe.
    again = await own_store.append_many(items, deadline_s=10.0)
    assert all(isinstance(r, Appended) for r in again), again
    counts = await submitted_per_job(own_store)
    assert counts == {i: 1 for i in ids}


async def test_single_append_against_a_stalled_server_is_uncertain(
    paused: NatsServer, own_store: EventStore
) -> None:
    assert paused.proc is not None
    os.kill(paused.proc.pid, signal.SIGSTOP)
    job_id = new_id()
    with pytest.raises(AppendUncertain) as caught:
        await own_store.append(job_append(submit(job_id), 0), deadline_s=0.5)
    assert "may or may not have landed" in str(caught.value)
    assert caught.value.subject == subjects.job("faults", job_id, "submitted")


# ---- (c) appends made across a restart land once it is back, exactly once -----------------


async def test_appends_across_a_restart_land_exactly_once(
    own_nats_server: NatsServer, own_nc: NATS, own_store: EventStore
) -> None:
    keyed = [new_id() for _ in range(5)]
    fenced = [new_id() for _ in range(5)]  # no msg id: only the fence guards a resend
    items = [job_append(submit(i), 0, msg_id=f"submit:faults:{i}") for i in keyed]
    items += [job_append(submit(i), 0) for i in fenced]
    own_nats_server.stop()
    for _ in range(100):  # until the client has noticed
        if not own_nc.is_connected:
            break
        await asyncio.sleep(0.02)
    started = time.monotonic()
    task = asyncio.create_task(own_store.append_many(items, deadline_s=15.0))
    await asyncio.sleep(1.0)
    await asyncio.to_thread(own_nats_server.start)
    results = await task
    elapsed = time.monotonic() - started
    assert all(isinstance(r, Appended) for r in results), results
    assert elapsed < 15.0
    counts = await submitted_per_job(own_store)
    assert counts == {i: 1 for i in keyed + fenced}


async def test_a_resend_after_a_lost_ack_is_recognised_without_a_msg_id(
    paused: NatsServer, own_store: EventStore
) -> None:
    """Fenced appends without a msg id, unanswered past one attempt's timeout, are sent again;
    when the first copy lands after all, the resend's conflict is recognised as our own copy."""
    ids = [new_id() for _ in range(4)]
    items = [job_append(submit(i), 0) for i in ids]
    assert paused.proc is not None and all(item.msg_id is None for item in items)
    os.kill(paused.proc.pid, signal.SIGSTOP)
    task = asyncio.create_task(own_store.append_many(items, deadline_s=8.0))
    await asyncio.sleep(ATTEMPT_TIMEOUT_S + 0.5)  # the first attempt has timed out and been resent
    os.kill(paused.proc.pid, signal.SIGCONT)
    results = await task
    assert all(isinstance(r, Appended) and r.duplicate for r in results), results
    assert await submitted_per_job(own_store) == {i: 1 for i in ids}


# ---- a 3-node cluster: the clustered pre-check's 10164 ------------------------------------


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[NatsServer]]:
    """Three JetStream nodes routed to each other on loopback."""
    ports = [(free_port(), free_port()) for _ in range(3)]
    routes = ",".join(f"nats://127.0.0.1:{cport}" for _, cport in ports)
    nodes: list[NatsServer] = []
    try:
        for n, (port, cport) in enumerate(ports):
            args = ["--server_name", f"n{n}", "--cluster_name", "faults"]
            args += ["--cluster", f"nats://127.0.0.1:{cport}", "--routes", routes]
            node = NatsServer(tmp_path / f"n{n}", port=port, log_file=tmp_path / f"n{n}.log", extra_args=args)
            nodes.append(node.start())
        yield nodes
    finally:
        for node in nodes:
            node.stop()


async def cluster_store(nodes: list[NatsServer]) -> EventStore:
    """A store on an R3 EVENTS stream, once the cluster has elected its leaders."""
    nc = await connect(",".join(node.url for node in nodes), "test-cluster")
    js = jetstream(nc)
    config = StreamConfig(
        name=EVENTS_STREAM, subjects=["ev.>"], num_replicas=3, allow_direct=True, duplicate_window=120
    )
    for _ in range(100):  # the meta leader is elected a few seconds after start
        try:
            await js.add_stream(config)
            break
        except (NatsError, TimeoutError):
            await asyncio.sleep(0.2)
    else:
        raise AssertionError("the cluster never accepted the stream")
    store = EventStore(nc, js)
    await store.append(job_append(submit(new_id()), 0), deadline_s=15.0)  # the stream leader is up
    return store


async def test_cluster_races_are_conflicts_and_retries_are_duplicates(cluster: list[NatsServer]) -> None:
    store = await cluster_store(cluster)
    try:
        # What the server itself answers to racing creates: 10164 (clustered pre-check) or 10071.
        job_id = new_id()
        headers = {
            "Nats-Expected-Last-Subject-Sequence": "0",
            "Nats-Expected-Last-Subject-Sequence-Subject": subjects.job_all("faults", job_id),
        }
        subject = subjects.job("faults", job_id, "submitted")
        replies = await asyncio.gather(
            *(store.nc.request(subject, b"{}", headers=headers, timeout=5) for _ in range(8))
        )
        codes = Counter(json.loads(r.data).get("error", {}).get("err_code") for r in replies)
        assert codes[None] == 1 and set(codes) <= {None, 10071, 10164}, codes
        # Through the store every loser is a conflict, never a generic AppendError.
        for _ in range(5):
            job_id = new_id()
            results = await store.append_many([job_append(submit(job_id), 0) for _ in range(8)])
            assert sum(isinstance(r, Appended) for r in results) == 1, results
            assert sum(isinstance(r, WrongExpectedSequence) for r in results) == 7, results
        # And a fenced retry of a landed append is a duplicate here too.
        job_id = new_id()
        first = await store.append(job_append(submit(job_id), 0, msg_id=f"submit:faults:{job_id}"))
        again = await store.append(job_append(submit(job_id), 0, msg_id=f"submit:faults:{job_id}"))
        assert again == Appended(first.seq, duplicate=True)
    finally:
        await store.nc.close()


async def test_appends_during_a_leader_kill_land_exactly_once(cluster: list[NatsServer]) -> None:
    """kill -9 of the EVENTS leader: appends see 503s and timeouts through the election, and
    land once a new leader is up, within one deadline, each exactly once."""
    store = await cluster_store(cluster)
    try:
        info = await store.js.stream_info(EVENTS_STREAM)
        assert info.cluster is not None and info.cluster.leader is not None
        leader = cluster[int(info.cluster.leader.removeprefix("n"))]
        keyed = [new_id() for _ in range(10)]
        fenced = [new_id() for _ in range(10)]
        items = [job_append(submit(i), 0, msg_id=f"submit:faults:{i}") for i in keyed]
        items += [job_append(submit(i), 0) for i in fenced]
        leader.kill()
        started = time.monotonic()
        results = await store.append_many(items)
        elapsed = time.monotonic() - started
        assert all(isinstance(r, Appended) for r in results), results
        print(f"leader kill: {elapsed:.1f} s to land {len(items)} appends")
        assert elapsed < APPEND_DEADLINE_S
        counts = await submitted_per_job(store)
        assert max(counts.values()) == 1 and all(counts[i] == 1 for i in keyed + fenced), counts
    finally:
        await store.nc.close()
