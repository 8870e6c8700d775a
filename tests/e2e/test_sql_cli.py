"""`jobstream sql` as a user types it, against a real API process on a real nats-server."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from services.runtime.nats_server import NatsServer
from services.runtime.ports import free_port
from tests.e2e.system import TOKEN, System, shell_job

pytestmark = pytest.mark.slow


@pytest.fixture
def api_only(tmp_path: Path) -> Iterator[System]:
    nats = NatsServer(tmp_path / "nats", port=free_port(), log_file=tmp_path / "nats.log").start()
    system = System(tmp_path, nats)
    try:
        system.start_api()
        yield system
    finally:
        system.shutdown()
        nats.stop()


def sql(system: System, *args: str, token: str = TOKEN) -> subprocess.CompletedProcess[str]:
    env = {**system.env(), "JOBSTREAM_URL": system.api_url, "JOBSTREAM_TOKEN": token}
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "sql", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_sql_formats_row_cap_and_refusals(api_only: System, tmp_path: Path) -> None:
    with api_only.client() as http:
        for i in range(3):
            assert http.post("/jobs", json=shell_job("true", name=f"q{i}", tags=["t"])).status_code == 201
    query = "SELECT name, status, submitted_at FROM jobs WHERE name LIKE 'q%' ORDER BY name"

    table = sql(api_only, query)
    assert table.returncode == 0, table.stderr
    assert "q0" in table.stdout and "pending" in table.stdout and "3 rows" in table.stderr
    rows = list(csv.reader(io.StringIO(sql(api_only, query, "--format", "csv").stdout)))
    assert rows[0] == ["name", "status", "submitted_at"] and [r[0] for r in rows[1:]] == ["q0", "q1", "q2"]
    as_json = json.loads(sql(api_only, query, "--format", "json").stdout)
    assert [r["name"] for r in as_json] == ["q0", "q1", "q2"]
    out = tmp_path / "jobs.parquet"
    done = sql(api_only, query, "--format", "parquet", "--output", str(out))
    assert done.returncode == 0, done.stderr
    parquet = pq.read_table(out)
    assert parquet.column("name").to_pylist() == ["q0", "q1", "q2"]
    assert str(parquet.schema.field("submitted_at").type).startswith("timestamp")

    capped = sql(api_only, query, "--max-rows", "2", "--format", "csv")
    assert capped.returncode == 0 and len(capped.stdout.strip().splitlines()) == 3
    assert "truncated" in capped.stderr

    for bad, named in [
        ("DELETE FROM jobs", "only SELECT"),
        ("COPY jobs TO '/tmp/x.csv'", "only SELECT"),
        ("SELECT * FROM read_csv('/etc/passwd')", "not allowed"),
    ]:
        refused = sql(api_only, bad)
        assert refused.returncode == 2 and refused.stderr.startswith("error: ") and named in refused.stderr
    assert sql(api_only, query, "--format", "parquet").returncode == 2
    assert "3 rows" in sql(api_only, query).stderr
