"""`jobstream events export|import|tail` as a user runs them (subprocesses) against real nats-servers
whose log the real dispatcher and workers wrote: an export imported into fresh servers rebuilds
into the same read model, sequences, holes and headers included; tail filters; bad input is named."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb

from events.domain import decide_create
from events.job import JobSpec, ShellExecutor
from events.store import EventStore, domain_append
from events.streams import EVENTS_STREAM, logs_stream, provision
from projections.rebuild import dump, rebuild
from services.runtime.connect import connect, jetstream
from services.runtime.nats_server import NatsServer
from tests.conftest import start_server
from tests.integration.harness import engine

TIMEOUT_S = 60.0


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "NATS_SERVICE_PASSWORD")}


async def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "services.cli", "events", *args],
        capture_output=True, text=True, timeout=TIMEOUT_S, env=_env(),
    )  # fmt: skip


async def ok(*args: str) -> subprocess.CompletedProcess[str]:
    done = await cli(*args)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done


async def make_log(url: str) -> tuple[str, int, int]:
    """A real log: a worker runs jobs (one fails, one prints), and a domain created then deleted
    mid-log leaves a hole. Returns the jobs' domain, the hole's sequence and the last sequence."""
    nc = await connect(url, "test")
    js = jetstream(nc)
    await provision(js)
    store = EventStore(nc, js)
    try:
        async with engine(url, store) as e:
            await store.append(domain_append(decide_create(e.domain, "test"), 0))
            e.start_dispatcher()
            e.start_worker("w1", max_concurrency=2)
            await e.ready("w1")
            spec = JobSpec(name="export", executor=ShellExecutor(script="echo one; echo two >&2"))
            jobs = [await e.submit(spec) for _ in range(3)]
            hole = (await store.append(domain_append(decide_create("gone" + e.domain, "test"), 0))).seq
            jobs.append(await e.submit(JobSpec(name="bad", executor=ShellExecutor(script="exit 3"))))
            for job_id in jobs:
                await e.wait(job_id, lambda s: s.terminal, timeout=TIMEOUT_S)
            domain = e.domain
        await js.delete_msg(EVENTS_STREAM, hole)
        last = int((await js.stream_info(EVENTS_STREAM)).state.last_seq)
        return domain, hole, last
    finally:
        await nc.close()


async def rebuilt(url: str, path: Path) -> dict[str, list[tuple[Any, ...]]]:
    nc = await connect(url, "test")
    try:
        await rebuild(path, nc, timeout=TIMEOUT_S)
    finally:
        await nc.close()
    con = duckdb.connect(str(path), read_only=True)
    try:
        return dump(con)
    finally:
        con.close()


async def stream_state(url: str, stream: str) -> Any:
    nc = await connect(url, "test")
    try:
        return (await jetstream(nc).stream_info(stream)).state
    finally:
        await nc.close()


async def test_export_then_import_into_fresh_servers_rebuilds_the_same_read_model(
    own_nats_server: NatsServer, tmp_path: Path
) -> None:
    source = own_nats_server.url
    domain, hole, last = await make_log(source)
    jsonl, parquet = tmp_path / "log.jsonl", tmp_path / "log.parquet"
    done = await ok("export", "--nats-url", source, "--output", str(jsonl), "--include-logs")
    assert f"exported {last - 1} events (seq 1..{last})" in done.stderr, done.stderr
    await ok("export", "--nats-url", source, "--format", "parquet", "-o", str(parquet), "--include-logs")

    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    events = [r for r in rows if r["stream"] == EVENTS_STREAM]
    assert [r["seq"] for r in events] == [s for s in range(1, last + 1) if s != hole]
    assert {r["stream"] for r in rows} - {EVENTS_STREAM} == {logs_stream(domain)}
    started = next(r for r in events if r["type"] == "started")
    assert started["payload"]["type"] == "started" and started["headers"]["Nats-Msg-Id"]
    assert started["time"].endswith("Z") and started["data"]

    part = tmp_path / "part.jsonl"
    await ok("export", "--nats-url", source, "-o", str(part), "--since", "3", "--until-seq", str(hole + 1))
    assert [json.loads(line)["seq"] for line in part.read_text().splitlines()] == [
        s for s in range(3, hole + 2) if s != hole
    ]
    stdout = await ok("export", "--nats-url", source, "-o", "-", "--domain", "nobody", "--since", "1m")
    assert stdout.stdout == "" and "exported 0 events (none)" in stdout.stderr

    original = await rebuilt(source, tmp_path / "a.duckdb")
    assert any(original.values())
    before = await stream_state(source, logs_stream(domain))
    for name, path in (("jsonl", jsonl), ("parquet", parquet)):
        target = start_server(tmp_path / name)
        try:
            done = await ok("import", str(path), "--nats-url", target.url, "--json")
            summary = json.loads(done.stdout)
            assert summary == {
                "events": last - 1, "outputs": before.messages, "first_seq": 1, "last_seq": last,
                "holes": 1, "renumbered": 0, "duplicates": 0,
            }, summary  # fmt: skip
            state = await stream_state(target.url, EVENTS_STREAM)
            assert (state.first_seq, state.last_seq, state.messages) == (1, last, last - 1)
            assert (await stream_state(target.url, logs_stream(domain))).messages == before.messages
            assert await rebuilt(target.url, tmp_path / f"{name}.duckdb") == original, name

            copy = tmp_path / f"{name}.copy.jsonl"
            await ok("export", "--nats-url", target.url, "-o", str(copy))
            copied = [json.loads(line) for line in copy.read_text().splitlines()]
            assert [(r["seq"], r["subject"], r["data"]) for r in copied] == [
                (r["seq"], r["subject"], r["data"]) for r in events
            ]
            for was, now in zip(events, copied, strict=True):
                assert now["headers"]["Jobstream-Original-Seq"] == str(was["seq"])
                assert now["headers"]["Jobstream-Original-Time"] == was["time"]
                kept = {k: v for k, v in was["headers"].items() if not k.startswith("Nats-Expected-")}
                assert kept.items() <= now["headers"].items()

            again = await cli("import", str(path), "--nats-url", target.url)
            assert again.returncode == 2 and "already holds" in again.stderr, again.stderr

        finally:
            target.stop()

    crowded = start_server(tmp_path / "crowded")  # --force: appended after what is there, new sequences
    try:
        nc = await connect(crowded.url, "test")
        js = jetstream(nc)
        await provision(js)
        await EventStore(nc, js).append(domain_append(decide_create("there", "test"), 0))
        await nc.close()
        forced = json.loads(
            (await ok("import", str(jsonl), "--nats-url", crowded.url, "--force", "--json")).stdout
        )
        # Each event lands one past its sequence until the hole, which the one already there fills.
        assert (forced["events"], forced["renumbered"], forced["holes"], forced["duplicates"]) == (
            last - 1, hole - 1, 0, 0,
        )  # fmt: skip
        state = await stream_state(crowded.url, EVENTS_STREAM)
        assert (state.first_seq, state.last_seq, state.messages) == (1, last, last)
    finally:
        crowded.stop()


async def test_tail_filters_by_type_and_since_and_follows_new_events(nats_server: NatsServer) -> None:
    url = nats_server.url
    nc = await connect(url, "test")
    js = jetstream(nc)
    await provision(js)
    store = EventStore(nc, js)
    domain = "tail" + str(time.time_ns())[-8:]
    other = "other" + str(time.time_ns())[-8:]
    try:
        first = (await store.append(domain_append(decide_create(domain, "test"), 0))).seq
        await store.append(domain_append(decide_create(other, "test"), 0))
        async with engine(url, store) as e:
            e.domain = domain
            e.start_dispatcher()
            e.start_worker("t1")
            await e.ready("t1")
            job = await e.submit(JobSpec(name="tail", executor=ShellExecutor(script="true")))
            await e.wait(job, lambda s: s.terminal, timeout=TIMEOUT_S)
            middle = (await store.read_job(domain, job))[1]

            done = await ok(
                "tail", "--nats-url", url, "--since", "1", "--domain", domain, "--no-follow", "--json"
            )
            seen = [json.loads(line) for line in done.stdout.splitlines()]
            assert seen[0]["seq"] == first and seen[0]["subject"] == f"ev.{domain}.domain.{domain}.created"
            assert {r["subject"].split(".")[1] for r in seen} == {domain}
            assert {"submitted", "dispatched", "started", "succeeded", "registered"} <= {
                r["type"] for r in seen
            }

            done = await ok(
                "tail", "--nats-url", url, "--since", str(first + 1), "--domain", domain,
                "--type", "succeeded", "--type", "started", "--no-follow",
            )  # fmt: skip
            lines = done.stdout.splitlines()
            assert [line.split()[3] for line in lines] == ["started", "succeeded"], lines
            assert lines[-1].split()[0] == str(middle) and f"ev.{domain}.job.{job}.succeeded" in lines[-1]

            cutoff = (await store.read_job(domain, job))[0]
            assert cutoff is not None and cutoff.finished_at is not None
            done = await ok(
                "tail", "--nats-url", url, "--since", cutoff.finished_at.isoformat(), "--subject",
                f"ev.*.job.{job}.>", "--domain", domain, "--no-follow", "--json",
            )  # fmt: skip
            assert [json.loads(line)["type"] for line in done.stdout.splitlines()] == ["succeeded"]

            follower = await asyncio.to_thread(
                subprocess.Popen, [sys.executable, "-m", "services.cli", "events", "tail", "--nats-url", url,
                                   "--domain", domain, "--type", "submitted", "--count", "2", "--json"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
            )  # fmt: skip
            try:
                new: list[str] = []
                deadline = time.monotonic() + TIMEOUT_S
                while follower.poll() is None and time.monotonic() < deadline:
                    new.append(await e.submit(JobSpec(name="follow", executor=ShellExecutor(script="true"))))
                    await asyncio.sleep(0.5)
                out, err = await asyncio.to_thread(follower.communicate, timeout=TIMEOUT_S)
            finally:
                if follower.poll() is None:
                    follower.kill()
            assert follower.returncode == 0, err
            followed = [json.loads(line) for line in out.splitlines()]
            assert len(followed) == 2 and all(r["type"] == "submitted" for r in followed)
            assert {r["payload"]["job_id"] for r in followed} <= set(new)
    finally:
        await nc.close()


async def test_bad_arguments_and_files_are_named(nats_server: NatsServer, tmp_path: Path) -> None:
    url = nats_server.url
    junk = tmp_path / "junk.jsonl"
    junk.write_text(
        '{"stream": "EVENTS", "seq": 1, "subject": "ev.a.job.x.submitted", "time": "x"}\nnot json\n'
    )
    cases: list[tuple[list[str], str]] = [
        (["tail", "--subject", "log.prod.>"], "--subject: 'log.prod.>' is not an event subject pattern"),
        (["tail", "--subject", "ev.prod.>", "--domain", "dev"], "outside --domain dev"),
        (["tail", "--since", "last tuesday"], "--since: 'last tuesday' is not a sequence"),
        (["tail", "--since", "0"], "a stream sequence starts at 1"),
        (["export", "--format", "csv", "-o", str(tmp_path / "x")], "--format: 'csv' is not jsonl or parquet"),
        (["export", "--format", "parquet", "-o", "-"], "needs a file"),
        (["export", "-o", str(tmp_path / "no" / "x.jsonl")], "does not exist"),
        (["export", "-o", "-", "--since", "10", "--until-seq", "5"], "--until-seq 5 is before --since 10"),
        (["import", str(tmp_path / "missing.jsonl")], "no such file"),
        (["import", str(junk)], f"{junk} line 1: not an exported event (no field 'data')"),
    ]
    for args, message in cases:
        done = await cli(*args, "--nats-url", url)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert done.stderr.startswith("error: ") and message in done.stderr, (args, done.stderr)
    unreachable = await cli("tail", "--nats-url", "nats://127.0.0.1:1")
    assert unreachable.returncode == 3 and "no NATS server answers" in unreachable.stderr


async def test_tail_follows_across_a_server_restart(own_nats_server: NatsServer) -> None:
    url = own_nats_server.url
    domain = "restart" + str(time.time_ns())[-8:]

    async def append(name: str) -> int:
        nc = await connect(url, "test")
        try:
            js = jetstream(nc)
            await provision(js)
            return (await EventStore(nc, js).append(domain_append(decide_create(name, "test"), 0))).seq
        finally:
            await nc.close()

    first = await append(domain)
    follower = await asyncio.to_thread(
        subprocess.Popen, [sys.executable, "-m", "services.cli", "events", "tail", "--nats-url", url,
                           "--since", str(first), "--subject", "ev.*.domain.*.created", "--count", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
    )  # fmt: skip
    try:
        assert follower.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(follower.stdout.readline), TIMEOUT_S)
        assert line.split()[0] == str(first) and f"ev.{domain}.domain.{domain}.created" in line, line
        own_nats_server.stop()
        await asyncio.sleep(1.0)
        own_nats_server.start()
        second = await append(domain + "b")
        out, err = await asyncio.to_thread(follower.communicate, timeout=TIMEOUT_S)
    finally:
        if follower.poll() is None:
            follower.kill()
    assert follower.returncode == 0, err
    assert out.split()[0] == str(second), out
