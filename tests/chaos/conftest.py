"""The chaos fleet: a 3-node cluster (R3 streams) with every service as real processes, two
dispatchers and two schedulers included. At teardown the log is audited like every e2e test's."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.fleet import CUT_WORKER, Fleet, start_monitored_cluster, start_partitionable_cluster
from tests.e2e.system import audit_log
from tests.integration.cluster import urls, wait_jetstream


@pytest.fixture
def fleet(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Fleet]:
    """Parametrized (indirect) with True: every connection passes a proxy a scenario can cut."""
    net = None
    if getattr(request, "param", False):
        servers, monitors, net = start_partitionable_cluster(tmp_path)
    else:
        servers, monitors = start_monitored_cluster(tmp_path)
    f = Fleet(tmp_path, servers[0], servers=servers, monitor_ports=monitors, net=net)
    if net is not None:
        f.env_for[CUT_WORKER] = {"NATS_URL": net.worker_url()}
    try:
        asyncio.run(wait_jetstream(urls(servers), 3))
        f.start_api()
        for name in ("dispatcher-a", "dispatcher-b"):
            f.start_dispatcher(name)
        for name in ("scheduler-a", "scheduler-b"):
            f.start_scheduler(name)
        for worker in ("w1", "w2", "w3"):
            f.start_worker(worker, "--max-concurrency", "3", "--grace-s", "2")
        yield f
        f.shutdown()
        found = audit_log(urls(servers))  # with the services stopped, while the cluster is up
    finally:
        f.shutdown()
        for server in servers:
            server.stop()
        if net is not None:
            net.proxies.close()
    if found is not None:
        pytest.fail(f"the fleet's event log breaks an invariant\n{found}", pytrace=False)
