"""Prometheus metrics read from the projection at scrape time, so every API replica agrees."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import duckdb
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from projections import metric_queries, queries, schedule_queries
from projections.projector import Projector

DISPATCH_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
LATENESS_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


# The services' own counters, by the names the seeds' cron service uses where it has them;
# counted from the log's events (projections/metric_queries.py). Exposed with `_total`.
SERVICE_COUNTERS = {
    "jobs_dispatched": "Attempts the dispatcher placed on a worker (requeued ones included)",
    "runs_emitted": "Jobs schedules fired (ticks, catch-ups, queued ticks, run-now, backfill)",
    "runs_skipped_overlap": "Schedule ticks skipped because an earlier run was still going",
    "runs_failed_launch": "Attempts of scheduled runs the worker could not start at all",
    "schedule_missed_ticks": "Ticks that passed while no scheduler ran and were not caught up",
}
assert set(SERVICE_COUNTERS) == set(metric_queries.NAMES)


class ProjectionCollector(Collector):
    def __init__(self, projector: Projector) -> None:
        self.projector = projector
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "jobstream_http_requests", "HTTP requests", ["method", "status"], registry=self.registry
        )
        self._snapshot: dict[str, Any] = {}
        self.registry.register(self)

    async def refresh(self) -> None:
        lag = await self.projector.lag()

        def read() -> dict[str, Any]:
            cur = self.projector.cursor()
            try:
                return {
                    "status": queries.status_counts(cur),
                    "latency": queries.dispatch_latency_buckets(cur, DISPATCH_BUCKETS_S),
                    "ticks": schedule_queries.tick_counts(cur),
                    "due": schedule_queries.due_count(cur),
                    "lateness": schedule_queries.lateness_buckets(cur, list(LATENESS_BUCKETS_S)),
                    "services": metric_queries.service_counts(cur),
                }
            finally:
                cur.close()

        try:
            snapshot = await asyncio.to_thread(read)
        except duckdb.Error:
            if self.projector.building is None:
                raise
            # The old read model served while the new one builds may lack what these read.
            return
        snapshot["lag"] = lag
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        yield from self._building()
        snap = self._snapshot
        if not snap:
            return
        jobs = GaugeMetricFamily("jobstream_jobs", "Jobs by domain and status", labels=["domain", "status"])
        for (domain, status), count in sorted(snap["status"].items()):
            jobs.add_metric([domain, status], count)
        yield jobs
        yield _histogram(
            "jobstream_dispatch_latency_seconds", "Time from submission to dispatch, per attempt",
            DISPATCH_BUCKETS_S, snap["latency"],
        )  # fmt: skip
        ticks = CounterMetricFamily(
            "jobstream_schedule_ticks", "Schedule ticks by outcome (fired, skipped, queued, missed)",
            labels=["domain", "outcome"],
        )  # fmt: skip
        for (domain, outcome), count in sorted(snap["ticks"].items()):
            ticks.add_metric([domain, outcome], count)
        yield ticks
        due = GaugeMetricFamily(
            "jobstream_schedules_due", "Active schedules whose next fire time has passed", labels=["domain"]
        )
        for domain, count in sorted(snap["due"].items()):
            due.add_metric([domain], count)
        yield due
        yield _histogram(
            "jobstream_schedule_fire_lateness_seconds", "Time from a tick's planned fire time to its job",
            LATENESS_BUCKETS_S, snap["lateness"],
        )  # fmt: skip
        yield GaugeMetricFamily(
            "jobstream_projection_lag_events", "Events not yet in the read model", snap["lag"]
        )
        yield GaugeMetricFamily(
            "jobstream_projection_undecodable_events",
            "Events skipped as undecodable",
            self.projector.undecodable,
        )
        yield CounterMetricFamily(
            "jobstream_undecodable_events",
            "Events in the log that no service can decode (each service skips them alike)",
            self.projector.undecodable,
        )
        for name, doc in SERVICE_COUNTERS.items():
            family = CounterMetricFamily(f"jobstream_{name}", doc, labels=["domain"])
            for domain, count in sorted(snap["services"][name].items()):
                family.add_metric([domain], count)
            yield family

    def _building(self) -> Iterator[Metric]:
        """The progress of a read model of a new schema version being built beside the served one."""
        building = self.projector.building
        yield GaugeMetricFamily(
            "jobstream_read_model_building",
            "1 while a read model of a new schema version is built beside the one served",
            1 if building is not None else 0,
        )
        if building is None:
            return
        prog = building.progress
        yield GaugeMetricFamily(
            "jobstream_replay_seq", "Sequence the read model being built has reached", prog.seq
        )
        yield GaugeMetricFamily(
            "jobstream_replay_target_seq",
            "Last sequence of the log the build is replaying to",
            prog.target_seq,
        )
        yield GaugeMetricFamily(
            "jobstream_replay_events_per_second", "Events the build has replayed per second", prog.rate
        )


def _histogram(
    name: str, doc: str, bounds: tuple[float, ...], data: tuple[list[int], float, int]
) -> HistogramMetricFamily:
    counts, total_sum, total = data
    hist = HistogramMetricFamily(name, doc)
    buckets = [(str(b), c) for b, c in zip(bounds, counts, strict=True)]
    buckets.append(("+Inf", total))
    hist.add_metric([], buckets, total_sum)
    return hist
