"""The worker's fence rule: an election is not a death, a lost connection is."""

from __future__ import annotations

import pytest

from events.worker import FENCE_DISCONNECTED_S, FENCE_UNACKED_S, HEARTBEAT_INTERVAL_S, WORKER_TTL_S
from services.worker.liveness import FenceRule

WORST_ELECTION_S = 10.0  # a follower campaigns after 4-9 s; a leader notices lost quorum at 10 s


def test_thresholds_outlast_an_election_and_fence_before_the_dispatcher_gives_jobs_away() -> None:
    assert FENCE_UNACKED_S > WORST_ELECTION_S + HEARTBEAT_INTERVAL_S
    # The worker notices at its next beat at the latest; that must still be inside the TTL.
    assert max(FENCE_UNACKED_S, FENCE_DISCONNECTED_S) + HEARTBEAT_INTERVAL_S < WORKER_TTL_S


def test_failed_acks_during_an_election_do_not_fence_but_a_long_outage_does() -> None:
    rule = FenceRule()
    assert rule.reason(now=100.0, last_ack=100.0 - WORST_ELECTION_S, disconnected_since=None) is None
    why = rule.reason(now=100.0, last_ack=100.0 - FENCE_UNACKED_S - 1, disconnected_since=None)
    assert why is not None and "no heartbeat acknowledged for 16.0s" in why


def test_a_lost_connection_fences_sooner_than_failed_acks() -> None:
    rule = FenceRule()
    assert rule.reason(now=100.0, last_ack=95.0, disconnected_since=95.0) is None  # a server restart
    why = rule.reason(now=100.0, last_ack=88.0, disconnected_since=88.0)
    assert why is not None and why.startswith("no connection to NATS for 12.0s")


def test_thresholds_at_or_past_the_ttl_are_refused() -> None:
    with pytest.raises(ValueError, match="below the worker TTL"):
        FenceRule(disconnected_s=WORKER_TTL_S)
    with pytest.raises(ValueError, match="below the worker TTL"):
        FenceRule(unacked_s=0)
