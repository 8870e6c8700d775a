"""What broker-auth's ingress lets a domain token put into the streams, and with which headers."""

from __future__ import annotations

import pytest

from events.codec import encode
from events.job import JobSpec, ShellExecutor, Started, Submitted
from events.worker import Heartbeat, LogBatch, LogLine
from services.broker.ingress import Refused, checked

STARTED = encode(Started(domain="blue", actor="w", job_id="j1", worker_id="w1", attempt=1))
SCOPE = "ev.blue.job.j1.>"
SUBMITTED = encode(
    Submitted(
        domain="blue", actor="w", job_id="j1", spec=JobSpec(name="x", executor=ShellExecutor(script="true"))
    )
)


def test_a_fenced_report_keeps_its_fence_and_trace_and_nothing_else() -> None:
    headers = {
        "Nats-Expected-Last-Subject-Sequence": "41",
        "Nats-Expected-Last-Subject-Sequence-Subject": SCOPE,
        "traceparent": "00-abc-def-01",
        "Nats-Msg-Id": "submit:green:invoice-1",  # would pre-empt green's idempotency key
        "Nats-Expected-Last-Msg-Id": "x",  # whose refusal would read out the stream's last id
        "Nats-Expected-Stream": "EVENTS",
    }
    assert checked("ev.blue.job.j1.started", STARTED, headers) == {
        "Nats-Expected-Last-Subject-Sequence": "41",
        "Nats-Expected-Last-Subject-Sequence-Subject": SCOPE,
        "traceparent": "00-abc-def-01",
    }


def test_a_fence_without_a_scope_is_scoped_to_its_own_aggregate() -> None:
    kept = checked("ev.blue.job.j1.started", STARTED, {"Nats-Expected-Last-Subject-Sequence": "7"})
    assert kept["Nats-Expected-Last-Subject-Sequence-Subject"] == SCOPE


@pytest.mark.parametrize("fence", [{}, {"Nats-Expected-Last-Subject-Sequence": "0"}])
def test_a_report_on_a_job_must_be_fenced_on_an_event_that_exists(fence: dict[str, str]) -> None:
    """Unfenced (or fenced on "no events yet"), a token could start the history of a job that
    never was; a worker's reports always follow the dispatch they answer."""
    with pytest.raises(Refused, match=r"must be fenced on the job's last event"):
        checked("ev.blue.job.j1.started", STARTED, fence)


@pytest.mark.parametrize("scope", ["ev.green.>", "ev.blue.>", "ev.blue.job.j2.>", ">"])
def test_a_fence_on_anything_but_its_own_aggregate_is_refused(scope: str) -> None:
    """Such a probe's refusal would tell the last sequence of another domain's subjects."""
    headers = {
        "Nats-Expected-Last-Subject-Sequence": "0",
        "Nats-Expected-Last-Subject-Sequence-Subject": scope,
    }
    with pytest.raises(Refused, match=r"may only be fenced on ev\.blue\.job\.j1\.>"):
        checked("ev.blue.job.j1.started", STARTED, headers)


@pytest.mark.parametrize(
    ("subject", "data", "says"),
    [
        ("ev.blue.job.j2.started", STARTED, "about job 'j1'"),
        ("ev.blue.job.j1.started", b"{}", "ev.blue.job.j1.started"),
        ("hb.blue.w2", encode(Heartbeat(worker_id="w1", domain="blue", seq=1)), "heartbeat payload"),
        (
            "log.blue.j1.x",
            encode(LogLine(seq=1, stream="stdout", line="hi")),
            "not an output subject",
        ),
        ("log.blue.j1.1", b"not json", "log line"),
        ("rd.blue.job.j1", b"0", "nothing may be published"),
        ("ev.blue.job.*.started", STARTED, "outside"),  # a literal '*' passes permissions
        ("hb.blue.*", encode(Heartbeat(worker_id="w1", domain="blue", seq=1)), "outside"),
        ("ev.blue.job.j1.submitted", SUBMITTED, "may not append job submitted"),
    ],
)
def test_what_is_not_a_valid_message_for_its_subject_is_refused(subject: str, data: bytes, says: str) -> None:
    with pytest.raises(Refused, match=says):
        checked(subject, data, None)


def test_heartbeats_and_output_lines_pass_without_headers() -> None:
    beat = encode(Heartbeat(worker_id="w1", domain="blue", seq=1))
    assert checked("hb.blue.w1", beat, {"Nats-Msg-Id": "x"}) == {}
    line = encode(LogLine(seq=1, stream="stdout", line="hi"))
    assert checked("log.blue.j1.1", line, None) == {}


def test_output_batches_pass_and_bad_ones_are_refused() -> None:
    good = encode(
        LogBatch([LogLine(seq=1, stream="stdout", line="a"), LogLine(seq=2, stream="jobstream", line="b")])
    )
    assert checked("log.blue.j1.1", good, None) == {}
    with pytest.raises(Refused, match="one of stdout"):
        checked("log.blue.j1.1", encode(LogBatch([LogLine(seq=1, stream="evil", line="a")])), None)
    with pytest.raises(Refused, match="log batch"):
        checked("log.blue.j1.1", b'{"kind":"batch","lines":3}', None)
