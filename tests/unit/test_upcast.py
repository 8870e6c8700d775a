"""Upcasting: v1 `skipped` payloads decode as the current (v2) type, other versions are refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from events.codec import DecodeError, decode_event, encode
from events.schedule import Skipped
from events.upcast import current_version, upcast

SUBJECT = "ev.fx.schedule.s1.skipped"
TICK = datetime(2026, 11, 2, 9, 10, tzinfo=UTC)


def v1(reason: str, **extra: Any) -> bytes:
    payload = {
        "type": "skipped", "domain": "fx", "actor": "scheduler", "id": "e1", "v": 1,
        "at": "2026-11-02T09:10:07Z", "schedule_id": "s1", "tick": "2026-11-02T09:10:00Z", "reason": reason,
    }  # fmt: skip
    return json.dumps({**payload, **extra}).encode()


@pytest.mark.parametrize(
    ("reason", "kind", "detail"),
    [
        ("overlap: previous run j1 not finished", "overlap", "previous run j1 not finished"),
        ("overlap: buffer full while j1 waits", "buffer_full", "while j1 waits"),
        ("maintenance window", "other", "maintenance window"),
        ("", "other", ""),
    ],
)
def test_a_v1_skipped_decodes_as_v2_and_reads_the_same_reason(reason: str, kind: str, detail: str) -> None:
    event = decode_event(SUBJECT, v1(reason))
    assert isinstance(event, Skipped)
    assert (event.v, event.kind, event.detail, event.reason) == (2, kind, detail, reason)
    assert (event.id, event.tick, event.actor) == ("e1", TICK, "scheduler")


def test_new_skipped_events_are_written_as_v2_without_the_old_field() -> None:
    event = Skipped(domain="fx", actor="scheduler", schedule_id="s1", tick=TICK, kind="overlap", detail="d")
    payload = msgspec.json.decode(encode(event))
    assert payload["v"] == 2 and payload["kind"] == "overlap" and "reason" not in payload
    assert decode_event(SUBJECT, encode(event)) == event
    assert current_version("schedule", "skipped") == 2 and current_version("job", "submitted") == 1


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (v1("x", v=3), "version 3 is newer than this code reads (v2)"),
        (v1("x", v=0), "version 0 is not a positive integer"),
        (v1("x", v="one"), "version 'one' is not a positive integer"),
        (v1("x", tick="not a time"), "after upcasting"),
        (b"[1, 2]", "not a JSON object"),
        (b"{", "truncated"),
    ],
)
def test_versions_no_chain_reaches_are_refused_naming_the_problem(data: bytes, named: str) -> None:
    with pytest.raises(DecodeError, match=r"ev\.fx\.schedule\.s1\.skipped") as exc:
        decode_event(SUBJECT, data)
    assert named.lower() in str(exc.value).lower(), exc.value


def test_a_current_payload_that_is_broken_keeps_its_own_error() -> None:
    good = encode(Skipped(domain="fx", actor="a", schedule_id="s1", tick=TICK, kind="overlap"))
    bad = good.replace(b'"kind":"overlap"', b'"kind":"sideways"')
    with pytest.raises(DecodeError) as exc:
        decode_event(SUBJECT, bad)
    assert "after upcasting" not in str(exc.value) and "kind" in str(exc.value)


def test_upcast_leaves_current_payloads_alone() -> None:
    payload = {"type": "submitted", "v": 1, "job_id": "j"}
    assert upcast("job", payload) == payload
