"""Prometheus metrics read from the projection at scrape time, so every API replica agrees."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from projections import queries
from projections.projector import Projector

DISPATCH_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


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
                }
            finally:
                cur.close()

        snapshot = await asyncio.to_thread(read)
        snapshot["lag"] = lag
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot
        if not snap:
            return
        jobs = GaugeMetricFamily("jobstream_jobs", "Jobs by domain and status", labels=["domain", "status"])
        for (domain, status), count in sorted(snap["status"].items()):
            jobs.add_metric([domain, status], count)
        yield jobs
        counts, total_sum, total = snap["latency"]
        hist = HistogramMetricFamily(
            "jobstream_dispatch_latency_seconds", "Time from submission to dispatch, per attempt"
        )
        buckets = [(str(b), c) for b, c in zip(DISPATCH_BUCKETS_S, counts, strict=True)]
        buckets.append(("+Inf", total))
        hist.add_metric([], buckets, total_sum)
        yield hist
        yield GaugeMetricFamily(
            "jobstream_projection_lag_events", "Events not yet in the read model", snap["lag"]
        )
        yield GaugeMetricFamily(
            "jobstream_projection_undecodable_events",
            "Events skipped as undecodable",
            self.projector.undecodable,
        )
