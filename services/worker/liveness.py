"""When a worker must stop its jobs: the fence rule, pure, with its thresholds.

Stopping (fencing) is for when the dispatcher may give our jobs to another worker: when our
beats cannot reach it. A failed beat acknowledgement alone does not mean that: beats are
also delivered to the dispatcher directly, and a HEARTBEATS leader election refuses
acknowledgements for several seconds while the beats still arrive. So: fence on a lost
connection (past a server restart), or on acknowledgements failing past the worst election.
"""

from __future__ import annotations

from dataclasses import dataclass

from events.worker import FENCE_DISCONNECTED_S, FENCE_UNACKED_S, WORKER_TTL_S


@dataclass(frozen=True, slots=True)
class FenceRule:
    disconnected_s: float = FENCE_DISCONNECTED_S
    unacked_s: float = FENCE_UNACKED_S

    def __post_init__(self) -> None:
        if not 0 < self.disconnected_s < WORKER_TTL_S or not 0 < self.unacked_s < WORKER_TTL_S:
            raise ValueError(f"fence thresholds must be positive and below the worker TTL ({WORKER_TTL_S}s)")

    def reason(self, now: float, last_ack: float, disconnected_since: float | None) -> str | None:
        """Why to fence now, or None to keep running."""
        if disconnected_since is not None and now - disconnected_since > self.disconnected_s:
            return f"no connection to NATS for {now - disconnected_since:.1f}s"
        if now - last_ack > self.unacked_s:
            return f"no heartbeat acknowledged for {now - last_ack:.1f}s"
        return None
