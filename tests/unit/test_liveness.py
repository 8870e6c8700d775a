"""The worker's fence rule: an election is not a death, a lost connection is."""

from __future__ import annotations

import pytest

from events.worker import FENCE_DISCONNECTED_S, FENCE_UNACKED_S, HEARTBEAT_INTERVAL_S, WORKER_TTL_S
from services.worker.agent import HEARTBEAT_TIMEOUT_S
from services.worker.liveness import FenceRule
from services.worker.process import KILL_GRACE_S

WORST_ELECTION_S = 9.0  # followers campaign after 4-9 s without a leader (raft.go)
MARGIN_S = 1.0


def test_thresholds_outlast_an_election_and_fence_before_the_dispatcher_gives_jobs_away() -> None:
    assert FENCE_UNACKED_S > WORST_ELECTION_S + HEARTBEAT_INTERVAL_S
    # The rule is checked once per beat (interval + the beat's own timeout), and killing the
    # jobs takes up to the kill grace: all of it must end before the dispatcher's TTL.
    slowest = max(FENCE_UNACKED_S, FENCE_DISCONNECTED_S) + HEARTBEAT_INTERVAL_S + HEARTBEAT_TIMEOUT_S
    assert slowest + KILL_GRACE_S + MARGIN_S < WORKER_TTL_S


def test_failed_acks_during_an_election_do_not_fence_but_a_long_outage_does() -> None:
    rule = FenceRule()
    assert rule.reason(now=100.0, last_ack=100.0 - WORST_ELECTION_S, disconnected_since=None) is None
    why = rule.reason(now=100.0, last_ack=100.0 - FENCE_UNACKED_S - 1, disconnected_since=None)
    assert why is not None and "no heartbeat acknowledged for 13.0s" in why


def test_a_lost_connection_fences_sooner_than_failed_acks() -> None:
    rule = FenceRule()
    assert rule.reason(now=100.0, last_ack=95.0, disconnected_since=95.0) is None  # a server restart
    assert FENCE_DISCONNECTED_S < 12.0
    why = rule.reason(now=100.0, last_ack=88.0, disconnected_since=88.0)
    assert why is not None and why.startswith("no connection to NATS for 12.0s")


def test_thresholds_at_or_past_the_ttl_are_refused() -> None:
    with pytest.raises(ValueError, match="below the worker TTL"):
        FenceRule(disconnected_s=WORKER_TTL_S)
    with pytest.raises(ValueError, match="below the worker TTL"):
        FenceRule(unacked_s=0)
