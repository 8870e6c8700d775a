"""A committed log holding v1 `skipped` events replays into the same read model as its v2 form.

tests/fixtures/log_v1.jsonl is frozen: one line per stored message (subject, headers, payload)
of a worker, a schedule that fired once and skipped three ticks in v1 form (free-text `reason`),
and two jobs. The test publishes it into a real nats-server and replays it through the
projector; it builds the v2 form of the same log by hand (each v1 `skipped` written as the v2
event this test states) on a second server, and the two read models must be equal.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import msgspec
from nats.aio.client import Client as NATS

from events.codec import decode_event, encode
from events.schedule import SkipKind, Skipped
from events.streams import provision
from projections.projector import Projector
from projections.rebuild import dump
from services.audit.command import run_verify
from services.runtime.connect import connect, jetstream
from services.runtime.nats_server import NatsServer
from tests.conftest import start_server

FIXTURE = Path(__file__).parents[1] / "fixtures" / "log_v1.jsonl"
J1 = "01FXJOB00000000000000001"
# What each v1 `skipped` of the fixture is in v2, by event id: stated here, not derived by the upcaster.
V2_SKIPS: dict[str, tuple[SkipKind, str]] = {
    "01FXEVENT00000000000000007": ("overlap", f"previous run {J1} not finished"),
    "01FXEVENT00000000000000008": ("buffer_full", f"while {J1} waits"),
    "01FXEVENT00000000000000010": ("other", "maintenance window"),
}


def raw(line: dict[str, Any]) -> bytes:
    return json.dumps(line["payload"]).encode()


def fixture() -> list[dict[str, Any]]:
    return [json.loads(line) for line in FIXTURE.read_text().splitlines() if line.strip()]


def as_v2(line: dict[str, Any]) -> dict[str, Any]:
    p = line["payload"]
    if p["type"] != "skipped":
        return line
    assert p["v"] == 1 and "reason" in p and "kind" not in p  # the fixture really holds v1
    kind, detail = V2_SKIPS[p["id"]]
    event = Skipped(
        domain=p["domain"], actor=p["actor"], id=p["id"], at=datetime.fromisoformat(p["at"]),
        schedule_id=p["schedule_id"], tick=datetime.fromisoformat(p["tick"]), kind=kind, detail=detail,
    )  # fmt: skip
    return {**line, "payload": msgspec.json.decode(encode(event))}


async def replay(url: str, lines: list[dict[str, Any]], db: Path) -> tuple[dict[str, list[Any]], int]:
    """Publish the lines into an empty server, replay them into `db`; the dump and the undecodable count."""
    nc: NATS = await connect(url, "test")
    js = jetstream(nc)
    await provision(js)
    for line in lines:
        await js.publish(line["subject"], raw(line), headers=line["headers"] or None)
    projector = Projector(db, nc)
    await projector.start()
    try:
        assert await projector.wait_for(len(lines), 20)
        undecodable = projector.undecodable
    finally:
        await projector.stop()
        await nc.close()
    con = duckdb.connect(str(db), read_only=True)
    try:
        tables = dump(con)
    finally:
        con.close()
    # The `events` table keeps each payload as it is in the log: v1 there, v2 in the other log.
    tables["events"] = [row[:-1] for row in tables["events"]]
    return tables, undecodable


async def test_the_v1_log_replays_into_the_read_model_its_v2_form_gives(
    own_nats_server: NatsServer, tmp_path: Path
) -> None:
    lines = fixture()
    assert sum(1 for line in lines if line["payload"]["type"] == "skipped") == len(V2_SKIPS)
    v1_tables, v1_bad = await replay(own_nats_server.url, lines, tmp_path / "v1.duckdb")
    # The audit's own fast decoder upcasts too: a v1 event is not a broken one.
    report = await run_verify(own_nats_server.url)
    assert report.events == len(lines)
    assert not [v for v in report.violations if v.check == "event.decodes"], report.violations
    other = start_server(tmp_path / "v2")
    try:
        v2_tables, v2_bad = await replay(other.url, [as_v2(line) for line in lines], tmp_path / "v2.duckdb")
    finally:
        other.stop()
    assert v1_bad == v2_bad == 0
    assert v1_tables == v2_tables
    con = duckdb.connect(str(tmp_path / "v1.duckdb"), read_only=True)
    try:
        runs = con.execute(
            "SELECT outcome, reason FROM schedule_runs WHERE outcome = 'skipped' ORDER BY seq"
        ).fetchall()
        counters = con.execute("SELECT fired, skipped FROM schedules").fetchall()
    finally:
        con.close()
    v1_reasons = [line["payload"]["reason"] for line in lines if line["payload"]["type"] == "skipped"]
    assert [r[1] for r in runs] == v1_reasons and counters == [(1, 3)]
    # The read model keeps only `reason`, which v1 and v2 spell alike: the kinds are checked on the events.
    for line in lines:
        assert decode_event(line["subject"], raw(line)) == decode_event(line["subject"], raw(as_v2(line)))
