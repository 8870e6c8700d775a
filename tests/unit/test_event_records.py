"""What `jobstream events` parses and writes without NATS: --since and --subject, the import's
headers, and the export files (JSON lines and Parquet) read back exactly."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from services.cli.event_log import ORIGINAL_MSG_ID, ORIGINAL_SEQ, ORIGINAL_TIME, _Importer, import_headers
from services.cli.event_records import Record, RecordError, Writer, iso, parse_iso_ns, read_file
from services.cli.events_api import subject_matches, subject_of
from services.cli.events_command import event_filter, parse_since, short_payload


def test_since_is_a_sequence_an_age_or_a_time() -> None:
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert parse_since("42") == 42
    assert parse_since("10m", now) == now - timedelta(minutes=10)
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("2026-12-01T09:00:00+01:00") == datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    local = datetime(2026, 12, 1, 9, 0).astimezone(UTC)
    assert parse_since("2026-12-01T09:00") == local
    for bad, message in (("0", "starts at 1"), ("soon", "is not a sequence"), ("-3", "is not a sequence")):
        with pytest.raises(ValueError, match=message):
            parse_since(bad)


def test_subject_patterns_are_narrowed_to_the_domain() -> None:
    assert event_filter(None, None) == "ev.>"
    assert event_filter("prod", None) == "ev.prod.>"
    assert event_filter("prod", "ev.*.job.*.failed") == "ev.prod.job.*.failed"
    assert event_filter("prod", "ev.>") == "ev.prod.>"
    assert event_filter(None, "ev.dev.schedule.*.fired") == "ev.dev.schedule.*.fired"
    for domain, subject, message in (
        ("prod", "ev.dev.>", "outside --domain prod"),
        (None, "log.prod.>", "not an event subject pattern"),
        (None, "ev.prod..x", "not an event subject pattern"),
        (None, "ev.>.job", "not an event subject pattern"),
        (None, "ev", "matches nothing"),
        ("pr od", None, "not a domain name"),
    ):
        with pytest.raises(ValueError, match=message):
            event_filter(domain, subject)


def record(seq: int, headers: dict[str, str] | None = None, data: bytes = b"") -> Record:
    payload = data or json.dumps({"type": "created", "domain": "prod", "actor": "t", "id": "x"}).encode()
    return Record(
        "EVENTS", seq, "ev.prod.domain.prod.created", 1_764_590_400_123_456_789, headers or {}, payload
    )


def test_import_headers_drop_conditions_keep_the_rest_and_rename_a_repeated_msg_id() -> None:
    original = {
        "Nats-Msg-Id": "a",
        "Nats-Expected-Last-Subject-Sequence": "7",
        "Nats-Expected-Last-Subject-Sequence-Subject": "ev.prod.job.j.>",
        "traceparent": "00-ab-cd-01",
    }
    seen: dict[str, float] = {}
    first = import_headers(record(9, original), seen, now=100.0)
    assert first == {"Nats-Msg-Id": "a", "traceparent": "00-ab-cd-01", ORIGINAL_SEQ: "9",
                     ORIGINAL_TIME: "2025-12-01T12:00:00.123456789Z"}  # fmt: skip
    again = import_headers(record(10, {"Nats-Msg-Id": "a"}), seen, now=150.0)
    assert again[ORIGINAL_MSG_ID] == "a" and "Nats-Msg-Id" not in again
    later = import_headers(record(11, {"Nats-Msg-Id": "a"}), seen, now=400.0)
    assert later["Nats-Msg-Id"] == "a"


def test_times_keep_nanoseconds() -> None:
    ns = 1_764_590_400_123_456_789
    assert iso(ns) == "2025-12-01T12:00:00.123456789Z" and parse_iso_ns(iso(ns)) == ns
    assert parse_iso_ns("2025-12-01T13:00:00+01:00") == 1_764_590_400 * 10**9


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_an_export_file_reads_back_exactly(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"x.{fmt}"
    records = [record(n, {"Nats-Msg-Id": f"m{n}"}) for n in range(1, 25_001)]
    records.append(Record("LOGS_prod", 1, "log.prod.j.1", 5, {}, b"\xff\x00 not json"))
    writer = Writer(str(path), fmt)  # type: ignore[arg-type]
    for r in records:
        writer.write(r)
    writer.close()
    assert list(read_file(path)) == records
    if fmt == "parquet":
        meta = pq.ParquetFile(path).metadata
        assert meta.num_rows == len(records) and meta.num_row_groups == 3
        assert pq.read_table(path).column("type").to_pylist()[:2] == ["created", "created"]


def test_short_payload_leaves_out_the_envelope_and_the_subjects_id() -> None:
    held = b'{"type":"held","domain":"p","actor":"d","id":"i","job_id":"j","reason":"r"}'
    assert short_payload(Record("EVENTS", 1, "ev.p.job.j.held", 0, {}, held)) == '{"reason":"r"}'
    fired = b'{"type":"fired","domain":"p","actor":"s","schedule_id":"s","job_id":"j"}'
    assert short_payload(Record("EVENTS", 2, "ev.p.schedule.s.fired", 0, {}, fired)) == '{"job_id":"j"}'
    assert short_payload(record(1, data=b"\x00")) == "<1 bytes, not a JSON object>"


def test_a_file_that_is_no_export_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"stream": "EVENTS", "seq": 1, "subject": "ev.a.b.c.d", "time": "2026-01-01T00:00:00Z",'
        ' "data": "%%%"}\n'
    )
    with pytest.raises(RecordError, match=r"bad.jsonl line 1: not an exported event"):
        list(read_file(bad))
    bad.write_text("[1, 2]\n")
    with pytest.raises(RecordError, match="line 1: not a JSON object"):
        list(read_file(bad))


def test_msg_ids_older_than_the_duplicate_window_are_forgotten_oldest_first() -> None:
    importer = _Importer(None, None, keep=True, next_seq=1)  # type: ignore[arg-type]
    seen = importer.recent_ids
    for n, (msg_id, at) in enumerate((("a", 0.0), ("b", 100.0), ("a", 125.0), ("c", 130.0)), 1):
        import_headers(record(n, {"Nats-Msg-Id": msg_id}), seen, at)
        importer._forget(at)
    assert seen == {"b": 100.0, "a": 125.0, "c": 130.0}
    importer._forget(240.0)
    assert list(seen) == ["a", "c"]


def test_the_api_streams_events_get_their_subjects_back() -> None:
    cases = [
        ("submitted", {"domain": "p", "job_id": "j", "schedule_id": "s"}, "ev.p.job.j.submitted"),
        ("dispatched", {"domain": "p", "job_id": "j", "worker_id": "w"}, "ev.p.job.j.dispatched.w"),
        ("started", {"domain": "p", "job_id": "j", "worker_id": "w"}, "ev.p.job.j.started"),
        ("fired", {"domain": "p", "schedule_id": "s", "job_id": "j"}, "ev.p.schedule.s.fired"),
        ("created", {"domain": "p", "schedule_id": "s"}, "ev.p.schedule.s.created"),
        ("created", {"domain": "p"}, "ev.p.domain.p.created"),
        ("deleted", {"domain": "p", "template": "t"}, "ev.p.template.t.deleted"),
        ("registered", {"domain": "p", "worker_id": "w"}, "ev.p.worker.w.registered"),
    ]
    for type_, payload, subject in cases:
        assert subject_of(type_, payload) == subject, (type_, payload)
    assert subject_matches("ev.p.job.*.dispatched.w", "ev.p.job.j.dispatched.w")
    assert subject_matches("ev.p.>", "ev.p.job.j.started")
    assert not subject_matches("ev.p.>", "ev.p")
    assert not subject_matches("ev.p.job.*.started", "ev.p.job.j.started.x")
    assert not subject_matches("ev.q.>", "ev.p.job.j.started")
