"""A read model of an older schema version is served while the new one builds beside it, and the
projector switches to the new one once it has caught up, against a real nats-server and files."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import duckdb

from bench.audit import write_log
from events.ids import new_id
from events.job import JobSpec, ShellExecutor, Submitted
from events.store import EventStore, job_append
from events.streams import provision
from projections import schema
from projections.projector import Projector
from projections.rebuild import dump
from projections.replay import replay
from services.api.domain_commands import ensure_default
from services.api.metrics import ProjectionCollector
from services.runtime.connect import connect, jetstream
from services.runtime.nats_server import NatsServer
from tests.integration.inprocess import AUTH, api_client

JOBS = 10_000  # 40,001 events: the build takes long enough to be seen under way


def tables(path: Path) -> dict[str, list[tuple[object, ...]]]:
    with duckdb.connect(str(path), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        return dump(con)


async def test_an_old_schema_is_served_until_the_new_one_has_caught_up(
    own_nats_server: NatsServer, tmp_path: Path
) -> None:
    await write_log(own_nats_server.url, JOBS)
    nc = await connect(own_nats_server.url, "test")
    await provision(jetstream(nc))
    store = EventStore(nc, jetstream(nc))
    path = tmp_path / "projection.duckdb"
    try:
        # The file an older jobstream left: part of the log, another schema version, a marker row.
        old = await replay(nc, path, until_seq=1_001)
        with duckdb.connect(str(path)) as con:
            con.execute("UPDATE checkpoint SET seq = ? WHERE name = 'schema'", [schema.SCHEMA_VERSION - 1])
            con.execute("UPDATE jobs SET name = 'from-the-old-file'")
            old_jobs = con.execute("SELECT count(*) FROM jobs").fetchone()
        projector = Projector(path, nc)
        await projector.start()
        try:
            building = projector.building
            assert building is not None, "the build finished before it could be seen; make the log bigger"
            assert f"serving the schema v{schema.SCHEMA_VERSION - 1} read model at seq {old.seq:,}" in (
                building.describe()
            )
            cur = projector.cursor()
            assert cur.execute("SELECT count(*) FROM jobs").fetchone() == old_jobs
            assert cur.execute("SELECT DISTINCT name FROM jobs").fetchall() == [("from-the-old-file",)]
            cur.close()
            assert projector.applied_seq == old.seq
            names = {m.name: m for m in ProjectionCollector(projector).collect()}
            assert names["jobstream_read_model_building"].samples[0].value == 1
            assert "jobstream_replay_seq" in names and "jobstream_replay_events_per_second" in names

            deadline = time.monotonic() + 120
            while projector.building is not None and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert projector.building is None, "never switched"
            assert building.progress.seq >= 4 * JOBS + 1 - 100

            # After the switch it follows the log like any projector.
            job_id = new_id()
            spec = JobSpec(name="after", executor=ShellExecutor(script="true"))
            done = await store.append(
                job_append(Submitted(domain="bench", actor="t", job_id=job_id, spec=spec), 0)
            )
            assert await projector.wait_for(done.seq, 30)
            cur = projector.cursor()
            assert cur.execute("SELECT count(*) FROM jobs").fetchone() == (JOBS + 1,)
            assert cur.execute("SELECT count(*) FROM jobs WHERE name = 'from-the-old-file'").fetchone() == (
                0,
            )
            cur.close()
            names = {m.name: m for m in ProjectionCollector(projector).collect()}
            assert names["jobstream_read_model_building"].samples[0].value == 0
        finally:
            await projector.stop()
        assert not building.next_path.exists()
        with duckdb.connect(str(path), read_only=True) as con:
            assert con.execute("SELECT seq FROM checkpoint WHERE name = 'schema'").fetchone() == (
                schema.SCHEMA_VERSION,
            )
        await replay(nc, tmp_path / "fresh.duckdb")
        assert tables(path) == tables(tmp_path / "fresh.duckdb")
    finally:
        await nc.close()


async def old_file(url: str, path: Path) -> None:
    """A log of JOBS jobs with the default domain, and an older version's file of its first part."""
    nc = await connect(url, "test")
    try:
        await provision(jetstream(nc))
        await ensure_default(EventStore(nc, jetstream(nc)))
        await write_log(url, JOBS)
        await replay(nc, path, until_seq=2_001)
    finally:
        await nc.close()
    with duckdb.connect(str(path)) as con:
        con.execute("UPDATE checkpoint SET seq = ? WHERE name = 'schema'", [schema.SCHEMA_VERSION - 1])


def test_the_api_answers_from_the_old_model_and_ready_and_metrics_show_the_build(
    own_nats_server: NatsServer, tmp_path: Path
) -> None:
    asyncio.run(old_file(own_nats_server.url, tmp_path / "projection.duckdb"))
    with api_client(own_nats_server.url, tmp_path) as api:
        ready = api.get("/ready")
        assert ready.status_code == 200, ready.text
        body = ready.json()
        assert body["status"] == "ready" and "seq 2,001 while v" in body["read_model"], body
        assert (
            body["replay"]["target_seq"] >= 4 * JOBS + 1
            and body["replay"]["seq"] <= body["replay"]["target_seq"]
        )
        text = api.get("/metrics").text
        assert "jobstream_read_model_building 1.0" in text and "jobstream_replay_target_seq" in text
        domain = api.get("/api/v1/admin/domains/prod", headers=AUTH)  # answered from the old file
        assert domain.status_code == 200 and domain.json()["name"] == "prod", domain.text
        assert api.get("/api/v1/jobs", headers=AUTH).status_code == 200
        # A write lands in the log but the old file cannot show it: 202 at once, with what it made.
        began = time.monotonic()
        job = {"name": "during", "executor": {"type": "shell", "script": "true"}, "tags": ["nowhere"]}
        submitted = api.post("/api/v1/jobs", json=job, headers=AUTH)
        assert submitted.status_code == 202, submitted.text
        assert submitted.json()["accepted"] is True and "rebuilt" in submitted.json()["detail"]
        token = api.post("/api/v1/admin/domains/prod/tokens", json={"name": "during"}, headers=AUTH)
        assert token.status_code == 202 and token.json()["token"].startswith("jst_"), token.text
        assert time.monotonic() - began < 5, "a write during a build waited for a switch"

        deadline = time.monotonic() + 120
        while "replay" in api.get("/ready").json() and time.monotonic() < deadline:
            time.sleep(0.2)
        ready = api.get("/ready").json()
        assert ready["status"] == "ready" and "replay" not in ready, ready
        assert "jobstream_read_model_building 0.0" in api.get("/metrics").text
        # After the switch both writes show, and the token shown once in the 202 works.
        shown = api.get(f"/api/v1/jobs/{submitted.json()['id']}", headers=AUTH)
        assert shown.status_code == 200 and shown.json()["spec"]["name"] == "during", shown.text
        mine = {"Authorization": f"Bearer {token.json()['token']}"}
        assert api.get("/api/v1/jobs", headers=mine).status_code == 200
