"""The projector against a real nats-server and real DuckDB files."""

from __future__ import annotations

import asyncio
from pathlib import Path

import duckdb
from nats.aio.client import Client as NATS

from events import subjects
from events.ids import new_id
from events.job import CancelRequested, JobSpec, JobStatus, ShellExecutor, Submitted
from events.store import EventStore, job_append
from events.streams import provision
from projections import queries
from projections.mapping import full
from projections.projector import Projector
from projections.rebuild import dump, rebuild
from services.runtime.connect import connect, jetstream
from services.runtime.nats_server import NatsServer
from tests.integration.harness import engine


def spec(script: str = "true", **kw: object) -> JobSpec:
    return JobSpec(name=str(kw.pop("name", "p")), executor=ShellExecutor(script=script), **kw)  # type: ignore[arg-type]


async def caught_up(projector: Projector, store: EventStore) -> None:
    assert await projector.wait_for(await store.last_seq(), 20)


async def test_projection_matches_the_log_survives_restart_and_equals_a_rebuild(
    own_nats_server: NatsServer, tmp_path: Path
) -> None:
    nc = await connect(own_nats_server.url, "test")
    await provision(jetstream(nc))
    store = EventStore(nc, jetstream(nc))
    live = Projector(tmp_path / "live.duckdb", nc, batch_max=7)
    await live.start()
    try:
        async with engine(own_nats_server.url, store) as e:
            e.start_dispatcher()
            e.start_worker("pw", tags=["blue"], max_concurrency=4)
            await e.ready("pw")
            ok, flaky, held = await e.mixed(
                [
                    spec(f"echo {i}", name=f"n{i % 2}", labels={"team": "a" if i % 3 else "b"})
                    for i in range(12)
                ],
                spec("exit 4", max_retries=1, retry_backoff_s=0.05),
                spec(tags=["red"]),
            )
            await caught_up(live, store)
            cur = live.cursor()

            for job_id in [*ok, flaky, held]:
                folded, last = await store.read_job(e.domain, job_id)
                shown = queries.get_job(cur, e.domain, job_id)
                assert shown is not None and shown.pop("last_seq") == last
                assert shown == full(folded)
            assert queries.get_job(cur, "elsewhere", ok[0]) is None

            flaky_view = queries.get_job(cur, e.domain, flaky)
            assert flaky_view is not None and flaky_view["status"] == "failed"
            assert [a["status"] for a in flaky_view["attempts"]] == ["failed", "failed"]

            history = queries.job_events(cur, e.domain, flaky)
            stored = await store.read(subjects.job_all(e.domain, flaky))
            assert [h["seq"] for h in history] == [s.seq for s in stored]
            assert [h["type"] for h in history] == [s.event.type for s in stored]

            # Pagination walks every job once, newest first.
            seen: list[str] = []
            cursor = None
            while True:
                items, cursor = queries.list_jobs(cur, e.domain, limit=5, cursor=cursor)
                seen += [j["id"] for j in items]
                if cursor is None:
                    break
            assert sorted(seen) == sorted([*ok, flaky, held]) and len(seen) == len(set(seen))
            times = [queries.get_job(cur, e.domain, j)["submitted_at"] for j in seen]  # type: ignore[index]
            assert times == sorted(times, reverse=True)

            def ids(**kw: object) -> set[str]:
                return {j["id"] for j in queries.list_jobs(cur, e.domain, limit=500, **kw)[0]}  # type: ignore[arg-type]

            assert ids(status="failed,cancelled") == {flaky, held}
            assert ids(name="n1") == {j for i, j in enumerate(ok) if i % 2}
            assert ids(tag="red") == {held}
            assert ids(label=("team", "b")) == {j for i, j in enumerate(ok) if i % 3 == 0}
            assert ids(worker="pw") == {*ok, flaky}

            [worker] = queries.list_workers(cur, e.domain)
            assert worker["id"] == "pw" and worker["status"] == "active" and worker["tags"] == ["blue"]
            assert queries.status_counts(cur)[(e.domain, "succeeded")] == 12
            counts, total_s, n = queries.dispatch_latency_buckets(cur, [0.001, 60.0])
            assert n == 14 and counts[-1] == 14 and counts[0] <= counts[-1] and total_s >= 0
            cur.close()
        await caught_up(live, store)
    finally:
        await live.stop()

    # A restart resumes after its checkpoint: nothing applied twice, nothing skipped.
    more = new_id()
    await store.append(
        job_append(Submitted(domain="prod", actor="test", job_id=more, spec=spec("sleep 1")), 0)
    )
    state, last = await store.read_job("prod", more)
    assert state is not None
    await store.append(job_append(CancelRequested(domain="prod", actor="t", job_id=more), last))
    again = Projector(tmp_path / "live.duckdb", nc)
    await again.start()
    try:
        await caught_up(again, store)
        cur = again.cursor()
        assert cur.execute("SELECT count(*), count(DISTINCT seq) FROM events").fetchone() == (
            await store.last_seq(),
            await store.last_seq(),
        )
        restarted = queries.get_job(cur, "prod", more)
        assert restarted is not None and restarted["cancel_requested"] is True
        live_tables = dump(cur)
        cur.close()
    finally:
        await again.stop()

    # Replaying the whole log into an empty file gives the same tables.
    reached = await rebuild(tmp_path / "replayed.duckdb", nc)
    assert reached == await store.last_seq()
    with duckdb.connect(str(tmp_path / "replayed.duckdb")) as con:
        assert dump(con) == live_tables
    await nc.close()


async def test_undecodable_events_are_counted_and_skipped(
    nc: NATS, store: EventStore, tmp_path: Path
) -> None:
    projector = Projector(tmp_path / "p.duckdb", nc)
    await projector.start()
    try:
        js = jetstream(nc)
        bad_id = new_id()
        await js.publish(subjects.job("prod", bad_id, "submitted"), b"{not json")
        await js.publish(subjects.job("prod", bad_id, "started"), b'{"type": "submitted"}')
        good = new_id()
        await store.append(job_append(Submitted(domain="prod", actor="t", job_id=good, spec=spec()), 0))
        await caught_up(projector, store)
        assert projector.undecodable == 2
        cur = projector.cursor()
        job = queries.get_job(cur, "prod", good)
        assert job is not None and job["status"] == JobStatus.PENDING
        assert queries.get_job(cur, "prod", bad_id) is None
        cur.close()
    finally:
        await projector.stop()


async def test_wait_for_times_out_when_the_sequence_never_comes(nc: NATS, tmp_path: Path) -> None:
    projector = Projector(tmp_path / "w.duckdb", nc)
    await projector.start()
    try:
        assert await projector.wait_for(10**12, 0.2) is False
        assert await projector.wait_for(0, 0.2) is True
        assert await projector.lag() >= 0
        await asyncio.sleep(0)
    finally:
        await projector.stop()
