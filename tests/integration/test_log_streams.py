"""Output streams per domain on a real broker: each domain's bound, the shared total, the old
all-domains LOGS stream kept readable, and a deleted domain's output going with it."""

from __future__ import annotations

from nats.js import JetStreamContext, api

from events import subjects
from events.codec import encode
from events.streams import (
    LEGACY_LOGS_PARKED_SUBJECT,
    LEGACY_LOGS_STREAM,
    Retention,
    drop_logs,
    log_streams,
    logs_stream,
    provision,
    provision_logs,
)
from events.worker import LogBatch, LogLine
from services.api.streams import output_stream, read_logs
from services.runtime.connect import connect, jetstream
from services.runtime.nats_server import NatsServer

LINE = "x" * 1000
BOUNDS = Retention(logs_max_bytes=600_000, logs_domain_max_bytes=400_000)


def batch(n: int) -> bytes:
    return encode(LogBatch(lines=[LogLine(seq=i, stream="stdout", line=LINE) for i in range(n)]))


async def max_bytes(js: JetStreamContext, domain: str) -> int:
    return int((await js.stream_info(logs_stream(domain))).config.max_bytes or 0)


async def test_each_domain_is_bounded_and_a_chatty_one_cannot_push_out_the_others(
    own_nats_server: NatsServer,
) -> None:
    nc = await connect(own_nats_server.url, "test")
    js = jetstream(nc)
    try:
        await provision(js, BOUNDS)
        await provision_logs(js, ["quiet"], BOUNDS)
        assert await max_bytes(js, "quiet") == 400_000  # alone: its own bound is the smaller
        await provision_logs(js, ["quiet", "chatty"], BOUNDS)
        assert await max_bytes(js, "quiet") == await max_bytes(js, "chatty") == 300_000  # half the total

        quiet = subjects.logs("quiet", "j1", 1)
        await js.publish(quiet, batch(10), stream=logs_stream("quiet"))
        for _ in range(50):  # 50 batches of 100 KB into a domain bounded at 300 KB
            await js.publish(subjects.logs("chatty", "j2", 1), batch(100), stream=logs_stream("chatty"))
        chatty_state = (await js.stream_info(logs_stream("chatty"))).state
        assert chatty_state.bytes <= 300_000 and chatty_state.messages < 50  # oldest dropped first
        page = await read_logs(js, "quiet", "j1", None, limit=100)
        assert [line["seq"] for line in page.items] == list(range(10))  # untouched by its neighbour

        await drop_logs(js, "chatty", BOUNDS)
        assert set(await log_streams(js)) == {logs_stream("quiet")}
        assert await max_bytes(js, "quiet") == 400_000  # the share comes back
    finally:
        await nc.close()


async def test_output_in_the_old_shared_stream_stays_readable_after_the_split(
    own_nats_server: NatsServer,
) -> None:
    nc = await connect(own_nats_server.url, "test")
    js = jetstream(nc)
    try:
        old = api.StreamConfig(name=LEGACY_LOGS_STREAM, subjects=["log.>"], storage=api.StorageType.FILE)
        await js.add_stream(old)
        before = subjects.logs("prod", "old-job", 1)
        await js.publish(before, batch(3), stream=LEGACY_LOGS_STREAM)

        await provision(js, BOUNDS)
        await provision_logs(js, ["prod"], BOUNDS)
        parked = await js.stream_info(LEGACY_LOGS_STREAM)
        assert parked.config.subjects == [LEGACY_LOGS_PARKED_SUBJECT] and parked.state.messages == 1

        assert await output_stream(js, "prod", before) == (LEGACY_LOGS_STREAM, 1)
        page = await read_logs(js, "prod", "old-job", None, limit=100)
        assert [line["seq"] for line in page.items] == [0, 1, 2] and page.next_cursor is None

        after = subjects.logs("prod", "new-job", 1)
        ack = await js.publish(after, batch(2))  # no stream named: the subject finds its stream
        assert ack.stream == logs_stream("prod")
        assert await output_stream(js, "prod", after) == (logs_stream("prod"), ack.seq)

        await js.purge_stream(LEGACY_LOGS_STREAM)  # what its age limit does in the end
        await provision(js, BOUNDS)
        assert LEGACY_LOGS_STREAM not in {i.config.name for i in await js.streams_info()}
    finally:
        await nc.close()
