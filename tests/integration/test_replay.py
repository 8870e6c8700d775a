"""`jobstream replay` against a real nats-server whose log the real dispatcher and worker wrote:
the bulk replay equals the live projector's read model, two replays are identical, a prefix
stops where asked, and `--verify` passes on the live file and fails on a tampered one."""

from __future__ import annotations

import asyncio
import inspect
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest
from nats.aio.client import Client as NATS

from events import domain as domain_events
from events import job as job_events
from events import schedule as schedule_events
from events import subjects
from events import template as template_events
from events import worker as worker_events
from events.codec import encode
from events.ids import new_id
from events.job import CancelRequested, JobSpec, ShellExecutor, Submitted
from events.store import EventStore, job_append
from events.streams import provision
from projections import mapping, projector, verify
from projections.projector import Projector
from projections.rebuild import dump
from projections.replay import replay
from services.runtime.connect import connect, jetstream
from services.runtime.nats_server import NatsServer
from tests.integration.harness import engine
from tests.integration.inprocess import TOKEN
from tests.integration.served import served_api

TIMEOUT_S = 120.0


def spec(script: str = "true", **kw: object) -> JobSpec:
    return JobSpec(name=str(kw.pop("name", "r")), executor=ShellExecutor(script=script), **kw)  # type: ignore[arg-type]


async def write_log(url: str, store: EventStore, nc: NATS) -> list[str]:
    """A log with retries, a cancel, undecodable events and events after a job finished."""
    async with engine(url, store) as e:
        e.start_dispatcher()
        e.start_worker("rw", tags=["blue"], max_concurrency=4)
        await e.ready("rw")
        ok, flaky, held = await e.mixed(
            [spec(f"echo {i}", name=f"n{i % 3}", labels={"k": str(i % 2)}) for i in range(9)],
            spec("exit 3", max_retries=2, retry_backoff_s=0.05),
            spec(tags=["red"]),
        )
        js = jetstream(nc)
        await js.publish(subjects.job(e.domain, new_id(), "submitted"), b"{not json")
        # An event for a job that finished long before: a chunked replay must load it back.
        late = CancelRequested(domain=e.domain, actor="t", job_id=ok[0])
        await js.publish(subjects.job(e.domain, ok[0], "cancel_requested"), encode(late))
        return [*ok, flaky, held]


async def live_model(path: Path, nc: NATS, store: EventStore) -> dict[str, list[tuple[object, ...]]]:
    live = Projector(path, nc, batch_max=7)
    await live.start()
    try:
        assert await live.wait_for(await store.last_seq(), 30)
        cur = live.cursor()
        tables = dump(cur)
        cur.close()
    finally:
        await live.stop()
    return tables


def file_dump(path: Path) -> dict[str, list[tuple[object, ...]]]:
    with duckdb.connect(str(path), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        return dump(con)


async def test_bulk_replay_equals_the_live_projector_and_two_replays_are_identical(
    own_nats_server: NatsServer, tmp_path: Path
) -> None:
    nc = await connect(own_nats_server.url, "test")
    await provision(jetstream(nc))
    store = EventStore(nc, jetstream(nc))
    try:
        jobs = await write_log(own_nats_server.url, store, nc)
        last = await store.last_seq()
        live = await live_model(tmp_path / "live.duckdb", nc, store)
        assert len(live["jobs"]) >= len(jobs) and len(live["events"]) == last - 1  # one undecodable

        seen: list[int] = []
        small = await replay(
            nc, tmp_path / "small.duckdb", chunk_events=5, on_progress=lambda p: seen.append(p.seq)
        )
        big = await replay(nc, tmp_path / "big.duckdb")
    finally:
        await nc.close()
    assert small.seq == big.seq == last and small.events == last and small.undecodable == 1
    assert seen == sorted(seen) and len(seen) > 5 and seen[-1] == last
    assert file_dump(tmp_path / "small.duckdb") == live
    assert file_dump(tmp_path / "big.duckdb") == live
    assert verify.hashes(tmp_path / "small.duckdb") == verify.hashes(tmp_path / "big.duckdb")
    assert verify.hashes(tmp_path / "big.duckdb") == verify.hashes(tmp_path / "live.duckdb")
    assert all(c.equal for c in verify.compare(tmp_path / "live.duckdb", tmp_path / "big.duckdb"))


async def test_replay_stops_at_a_sequence_or_a_time(nc: NATS, store: EventStore, tmp_path: Path) -> None:
    domain = "t" + new_id()[-8:].lower()
    seqs, ids = [], [new_id() for _ in range(6)]
    for job_id in ids:
        done = await store.append(
            job_append(Submitted(domain=domain, actor="t", job_id=job_id, spec=spec()), 0)
        )
        seqs.append(done.seq)
    cut = seqs[2]
    prefix = await replay(nc, tmp_path / "seq.duckdb", until_seq=cut)
    assert prefix.seq == cut
    with duckdb.connect(str(tmp_path / "seq.duckdb"), read_only=True) as con:
        assert con.execute("SELECT max(seq) FROM events").fetchone() == (cut,)
        assert con.execute("SELECT seq FROM checkpoint WHERE name = 'events'").fetchone() == (cut,)
        assert con.execute("SELECT count(*) FROM jobs WHERE domain = ?", [domain]).fetchone() == (3,)

    [fourth] = await store.read(subjects.job_all(domain, ids[3]))
    until = fourth.event.at - timedelta(microseconds=1)  # just before the fourth job's submission
    timed = await replay(nc, tmp_path / "time.duckdb", until=until)
    assert timed.seq == cut
    with duckdb.connect(str(tmp_path / "time.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM jobs WHERE domain = ?", [domain]).fetchone() == (3,)


def test_the_fold_reads_no_clock_and_draws_no_randomness() -> None:
    """The functions a replay runs per event name no clock, random source or id generator."""
    folds = [
        projector.fold_batch, projector.absorb, projector.EventRows.add, job_events.evolve,
        job_events._evolve, worker_events.evolve_worker, schedule_events.evolve_schedule,
        domain_events.evolve_domain, template_events.evolve_template,
    ]  # fmt: skip
    sources = [inspect.getsource(f) for f in folds] + [inspect.getsource(mapping)]  # type: ignore[arg-type]
    forbidden = re.compile(r"\b(now|utcnow|today|time\.time|monotonic|random|uuid\w*|new_id|token_\w+)\s*\(")
    for source in sources:
        assert not forbidden.findall(source), forbidden.findall(source)


def cli(*args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "NATS_SERVICE_PASSWORD")}
    env |= extra_env
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "replay", *args],
        capture_output=True, text=True, timeout=TIMEOUT_S, env=env,
    )  # fmt: skip


async def test_replay_command_builds_a_file_and_verify_finds_a_tampered_row(
    own_nats_server: NatsServer, tmp_path: Path
) -> None:
    url = own_nats_server.url
    nc = await connect(url, "test")
    await provision(jetstream(nc))
    store = EventStore(nc, jetstream(nc))
    try:
        jobs = await write_log(url, store, nc)
        last = await store.last_seq()
        await live_model(tmp_path / "live.duckdb", nc, store)
    finally:
        await nc.close()

    built = await asyncio.to_thread(cli, "--into", str(tmp_path / "new.duckdb"), "--nats-url", url)
    assert built.returncode == 0, built.stderr
    assert f"up to seq {last}" in built.stdout and "1 undecodable" in built.stdout
    assert re.search(r"replay: seq [\d,]+ of [\d,]+, [\d,]+ events, [\d,]+ events/s, ETA", built.stderr)
    assert file_dump(tmp_path / "new.duckdb") == file_dump(tmp_path / "live.duckdb")

    again = await asyncio.to_thread(cli, "--into", str(tmp_path / "new.duckdb"), "--nats-url", url)
    assert again.returncode == 2 and "exists" in again.stderr
    both = await asyncio.to_thread(
        cli, "--into", str(tmp_path / "x.duckdb"), "--until-seq", "3", "--until", "2026"
    )
    assert both.returncode == 2 and "not both" in both.stderr
    bad_time = await asyncio.to_thread(
        cli, "--into", str(tmp_path / "x.duckdb"), "--until", "soon", "--nats-url", url
    )
    assert bad_time.returncode == 2 and "ISO 8601" in bad_time.stderr
    assert not (tmp_path / "x.duckdb").exists()

    live = str(tmp_path / "live.duckdb")
    same = await asyncio.to_thread(cli, "--verify", "--db", live, "--nats-url", url)
    assert same.returncode == 0, same.stdout + same.stderr
    assert f"equals the log replayed to seq {last:,}" in same.stdout

    with duckdb.connect(live) as con:
        con.execute("UPDATE jobs SET status = 'succeeded' WHERE id = ?", [jobs[-1]])
    differs = await asyncio.to_thread(cli, "--verify", "--db", live, "--nats-url", url)
    assert differs.returncode == 1, differs.stdout + differs.stderr
    lines = differs.stdout.splitlines()
    assert any(line.startswith("jobs ") and line.endswith("DIFFERENT") for line in lines)
    assert any("only in live:" in line and jobs[-1] in line and "'succeeded'" in line for line in lines)
    assert any("only in replay:" in line and jobs[-1] in line and "'cancelled'" in line for line in lines)
    assert all(line.endswith("equal") for line in lines if line.startswith(("events ", "attempts ")))

    # `jobstream rebuild` replays beside the live file and swaps it in: equal again.
    env = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "NATS_SERVICE_PASSWORD")}
    rebuilt = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "services.cli", "rebuild", "--nats-url", url, "--db", live],
        capture_output=True, text=True, timeout=TIMEOUT_S, env=env,
    )  # fmt: skip
    assert rebuilt.returncode == 0 and f"up to seq {last}" in rebuilt.stdout, rebuilt.stderr
    assert "rebuild: seq" in rebuilt.stderr
    healed = await asyncio.to_thread(cli, "--verify", "--db", live, "--nats-url", url)
    assert healed.returncode == 0, healed.stdout + healed.stderr


async def test_verify_of_the_read_model_a_running_api_holds(
    own_nats_server: NatsServer, tmp_path: Path
) -> None:
    """The API's process holds its file, so no other can open it: `--api` verifies a snapshot the
    API takes inside one transaction, and a tampered row in the live file still shows."""
    url = own_nats_server.url
    nc = await connect(url, "test")
    await provision(jetstream(nc))
    store = EventStore(nc, jetstream(nc))
    try:
        jobs = await write_log(url, store, nc)
        last = await store.last_seq()
    finally:
        await nc.close()
    db = tmp_path / "projection.duckdb"
    with served_api(url, tmp_path) as api:
        env = {"JOBSTREAM_URL": api, "JOBSTREAM_TOKEN": TOKEN}
        locked = await asyncio.to_thread(cli, "--verify", "--db", str(db), "--nats-url", url)
        assert locked.returncode == 2 and "give --api" in locked.stderr, locked.stderr
        same = await asyncio.to_thread(cli, "--verify", "--api", "--nats-url", url, **env)
        assert same.returncode == 0, same.stdout + same.stderr
        seq = int(re.findall(r"replayed to seq ([\d,]+)", same.stdout)[0].replace(",", ""))
        assert seq >= last and "equals" in same.stdout and "the API's read model" in same.stdout
        assert list(tmp_path.glob("snapshot-*")) == []  # each copy is removed once sent

        stranger = await asyncio.to_thread(
            cli, "--verify", "--api", "--nats-url", url, JOBSTREAM_URL=api, JOBSTREAM_TOKEN="jst_wrong"
        )
        assert stranger.returncode not in (0, 1) and "no snapshot" in stranger.stderr, stranger.stderr
        alone = await asyncio.to_thread(cli, "--api", "--into", str(tmp_path / "x.duckdb"), **env)
        assert alone.returncode == 2 and "--api goes with --verify" in alone.stderr

    # A row changed behind the projector's back is in the snapshot, and verify names it.
    with duckdb.connect(str(db)) as con:
        con.execute("UPDATE jobs SET status = 'succeeded' WHERE id = ?", [jobs[-1]])
    with served_api(url, tmp_path) as api:
        differs = await asyncio.to_thread(
            cli, "--verify", "--api", "--nats-url", url, JOBSTREAM_URL=api, JOBSTREAM_TOKEN=TOKEN
        )
        assert differs.returncode == 1, differs.stdout + differs.stderr
        assert "differs from the log" in differs.stdout and jobs[-1] in differs.stdout


@pytest.mark.parametrize("missing", ["--db"])
def test_verify_names_a_missing_live_file(tmp_path: Path, missing: str) -> None:
    done = cli("--verify", missing, str(tmp_path / "nope.duckdb"), "--nats-url", "nats://127.0.0.1:1")
    assert done.returncode == 2 and "does not exist" in done.stderr
