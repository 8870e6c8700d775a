"""The event store against a real nats-server: concurrency, fencing, dedupe, reads, bad input."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from nats.aio.client import Client as NATS

from events import subjects
from events.codec import DecodeError, decode_event
from events.ids import new_id
from events.job import (
    JobSpec,
    JobStatus,
    ShellExecutor,
    Submitted,
    decide_dispatch,
    decide_requeue,
    decide_start,
)
from events.store import AppendError, EventStore, ReadPage, WrongExpectedSequence, job_append

SPEC = JobSpec(name="t", executor=ShellExecutor(script="true"))


def submit(job_id: str, domain: str = "prod") -> Submitted:
    return Submitted(domain=domain, actor="test", job_id=job_id, spec=SPEC)


async def test_create_only_if_job_has_no_events(store: EventStore) -> None:
    job_id = new_id()
    first = await store.append(job_append(submit(job_id), 0))
    assert first.seq > 0 and not first.duplicate
    with pytest.raises(WrongExpectedSequence):
        await store.append(job_append(submit(job_id), 0))
    state, last = await store.read_job("prod", job_id)
    assert state is not None and state.status is JobStatus.PENDING and last == first.seq


async def test_msg_id_dedupes_a_retried_publish(store: EventStore) -> None:
    job_id = new_id()
    first = await store.append(job_append(submit(job_id), 0, msg_id=f"k-{job_id}"))
    again = await store.append(job_append(submit(job_id), first.seq, msg_id=f"k-{job_id}"))
    assert again.duplicate and again.seq == first.seq


async def test_two_writers_only_one_wins(store: EventStore) -> None:
    job_id = new_id()
    created = await store.append(job_append(submit(job_id), 0))
    state, _ = await store.read_job("prod", job_id)
    assert state is not None
    results = await store.append_many(
        [job_append(decide_dispatch(state, w), created.seq) for w in ("w1", "w2", "w3")]
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1
    assert sum(isinstance(r, WrongExpectedSequence) for r in results) == 2


async def test_started_is_fenced_on_the_exact_dispatch(store: EventStore) -> None:
    job_id = new_id()
    created = await store.append(job_append(submit(job_id), 0))
    state, _ = await store.read_job("prod", job_id)
    assert state is not None
    dispatched = await store.append(job_append(decide_dispatch(state, "w1"), created.seq))
    state, _ = await store.read_job("prod", job_id)
    assert state is not None
    start = decide_start(state, "w1", 1)
    # A start against an older sequence (a stale assignment) is refused.
    with pytest.raises(WrongExpectedSequence):
        await store.append(job_append(start, created.seq))
    ok = await store.append(job_append(start, dispatched.seq))
    assert ok.seq > dispatched.seq


async def test_concurrency_scope_is_per_job(store: EventStore) -> None:
    a, b = new_id(), new_id()
    await store.append(job_append(submit(a), 0))
    # Job b has no events even though the stream has many: its own scope decides.
    created = await store.append(job_append(submit(b), 0))
    assert created.seq > 0


async def test_pipelined_appends_all_land_in_order(store: EventStore) -> None:
    ids = [new_id() for _ in range(500)]
    results = await store.append_many([job_append(submit(i), 0) for i in ids])
    seqs = [r.seq for r in results if not isinstance(r, BaseException)]
    assert len(seqs) == 500 and seqs == sorted(seqs)


async def test_append_to_subject_without_stream_is_an_error(store: EventStore) -> None:
    fut = await store.publisher.publish("nostream.here", b"{}")
    with pytest.raises(AppendError):
        await asyncio.wait_for(fut, 5)


async def test_undecodable_event_is_a_decode_error(nc: NATS, store: EventStore) -> None:
    job_id = new_id()
    await nc.publish(subjects.job("prod", job_id, "submitted"), b"\xff not json")
    with pytest.raises(DecodeError):
        decode_event(subjects.job("prod", job_id, "submitted"), b"\xff not json")
    with pytest.raises(DecodeError):
        decode_event("ev.prod.job", b"{}")
    wrong_type = job_append(submit(job_id), 0).event
    with pytest.raises(DecodeError, match="payload says"):
        from events.codec import encode

        decode_event(subjects.job("prod", job_id, "started"), encode(wrong_type))


async def test_reads_through_the_proxy_match_direct_reads_page_by_page(
    nc: NATS, store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a domain-token worker reads (via `rd.…`) is exactly what the log holds."""
    from events import store as store_module
    from services.broker.reads import serve_reads

    monkeypatch.setattr(store_module, "READ_PAGE_BYTES", 600)  # a few events per page
    job_id = new_id()
    seq = (await store.append(job_append(submit(job_id), 0))).seq
    state, _ = await store.read_job("prod", job_id)
    assert state is not None
    for _ in range(3):
        event = decide_dispatch(state, "w1")
        seq = (await store.append(job_append(event, seq))).seq
        state, _ = await store.read_job("prod", job_id)
        assert state is not None
        seq = (await store.append(job_append(decide_requeue(state, "w1", state.attempt, "test"), seq))).seq
        state, _ = await store.read_job("prod", job_id)
        assert state is not None
    sub = await serve_reads(nc, store)
    try:
        proxied = EventStore(nc, store.js, via_proxy=True)
        direct = await store.read(subjects.job_all("prod", job_id))
        assert len(direct) == 7
        assert await proxied.read(subjects.job_all("prod", job_id)) == direct
        assert await proxied.read(subjects.job_all("prod", job_id), after=direct[3].seq) == direct[4:]
        assert await proxied.read_job("prod", job_id) == await store.read_job("prod", job_id)
        assert await proxied.read(subjects.job_all("prod", "no-such-job")) == []
        with pytest.raises(subjects.SubjectError, match="only one aggregate"):
            await proxied.read("ev.prod.job.>")
        for subject, body, says in (
            ("rd.prod.nothing.x", b"0", "unknown aggregate"),
            ("rd.prod.job.x", b"abc", "bad read request"),
            ("rd.prod.job.x", b"-1", "negative"),
            ("rd.prod.job.*", b"0", "is not an id"),
        ):
            reply = await nc.request(subject, body, timeout=5)
            page = msgspec.msgpack.decode(reply.data, type=ReadPage)
            assert says in page.error and page.events == []
    finally:
        await sub.unsubscribe()
