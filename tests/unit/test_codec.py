"""Decoding checks the payload against its subject: a publisher allowed one subject cannot
smuggle in an event about another aggregate, worker or domain."""

from __future__ import annotations

import pytest

from events.codec import DecodeError, decode_event, decode_heartbeat, encode
from events.job import Started
from events.worker import Heartbeat


def started(job_id: str = "j1", domain: str = "blue") -> bytes:
    return encode(Started(domain=domain, actor="w", job_id=job_id, worker_id="w1", attempt=1))


def test_an_event_decodes_on_its_own_subject() -> None:
    event = decode_event("ev.blue.job.j1.started", started())
    assert isinstance(event, Started) and event.job_id == "j1"


@pytest.mark.parametrize(
    ("subject", "data", "says"),
    [
        ("ev.blue.job.j2.started", started("j1"), "about job 'j1'"),
        ("ev.green.job.j1.started", started(), "payload says blue/started"),
        ("ev.blue.job.j1.failed", started(), "payload says blue/started"),
        ("ev.blue.job.j1.started", b"{not json", "ev.blue.job.j1.started"),
        ("ev.blue.nothing.j1.started", started(), "unknown aggregate"),
        ("hb.blue.w1", started(), "not an event subject"),
    ],
)
def test_a_payload_that_contradicts_its_subject_is_refused(subject: str, data: bytes, says: str) -> None:
    with pytest.raises(DecodeError, match=says):
        decode_event(subject, data)


def test_a_dispatch_names_the_worker_its_subject_names() -> None:
    from events.job import Dispatched, JobSpec, ShellExecutor

    spec = JobSpec(name="x", executor=ShellExecutor(script="true"))
    data = encode(Dispatched(domain="blue", actor="d", job_id="j1", worker_id="w1", attempt=1, spec=spec))
    assert isinstance(decode_event("ev.blue.job.j1.dispatched.w1", data), Dispatched)
    with pytest.raises(DecodeError, match="another worker"):
        decode_event("ev.blue.job.j1.dispatched.w2", data)


def test_a_heartbeat_counts_only_for_the_worker_its_subject_names() -> None:
    data = encode(Heartbeat(worker_id="w1", domain="blue", seq=1))
    assert decode_heartbeat("hb.blue.w1", data).worker_id == "w1"
    for subject in ("hb.green.w1", "hb.blue.w2"):
        with pytest.raises(DecodeError, match="heartbeat payload is for blue/w1"):
            decode_heartbeat(subject, data)


def test_worker_ids_outside_the_safe_alphabet_are_refused() -> None:
    """They become consumer names and broker permissions; one bad id must not break either."""
    from events.worker import Registered

    for bad in ("w\u00e9", 'w"x', "w:x"):
        data = encode(Registered(domain="blue", actor="w", worker_id=bad))
        with pytest.raises(DecodeError, match="may only hold"):
            decode_event(f"ev.blue.worker.{bad}.registered", data)
