"""Time travel's read of one aggregate's events from the read model (real DuckDB, no broker):
a point read through the events (aggregate_id) index, the other conditions applied to its hits."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import duckdb
import pyarrow as pa
import pytest

from projections import schema
from services.api.as_of import STORED_EVENTS, stored_events

AT = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    c = duckdb.connect(":memory:")
    schema.ensure(c)
    yield c
    c.close()


def _add(con: duckdb.DuckDBPyConnection, rows: list[tuple[int, str, str, str]]) -> None:
    """Rows of (seq, domain, aggregate, aggregate_id), in one transaction as the projector writes."""
    batch = pa.table(
        {
            "seq": [r[0] for r in rows],
            "domain": [r[1] for r in rows],
            "aggregate": [r[2] for r in rows],
            "aggregate_id": [r[3] for r in rows],
            "type": ["x"] * len(rows),
            "subject": [f"ev.{d}.{a}.{i}.x" for _, d, a, i in rows],
            "at": pa.array([AT] * len(rows), schema.TS),
            "actor": ["test"] * len(rows),
            "data": [f'{{"n": {r[0]}}}' for r in rows],
        }
    )
    con.register("batch_rows", batch)
    con.execute("INSERT INTO events SELECT * FROM batch_rows")
    con.unregister("batch_rows")
    con.execute("UPDATE checkpoint SET seq = ? WHERE name = 'events'", [max(r[0] for r in rows)])


def test_only_the_aggregates_own_events_up_to_the_sequence_in_order(con: duckdb.DuckDBPyConnection) -> None:
    rows = [(q, "prod", "job", f"j{q % 50}") for q in range(1, 5001)]
    # The same id elsewhere: another domain's job and a worker of the same name.
    rows += [(5001, "other", "job", "j7"), (5002, "prod", "worker", "j7"), (5003, "prod", "job", "j7")]
    _add(con, rows)
    got, complete_to = stored_events(con, "prod", "job", "j7", 5003)
    assert complete_to == 5003
    assert [q for q, _, _ in got] == [*range(7, 5001, 50), 5003]
    assert got[0][1] == "ev.prod.job.j7.x" and got[0][2] == b'{"n": 7}'
    early, _ = stored_events(con, "prod", "job", "j7", 400)
    assert [q for q, _, _ in early] == list(range(7, 401, 50))
    assert stored_events(con, "other", "job", "j7", 5003)[0][0][0] == 5001
    assert stored_events(con, "prod", "job", "nobody", 5003)[0] == []


def test_the_read_is_an_index_scan(con: duckdb.DuckDBPyConnection) -> None:
    _add(con, [(q, "prod", "job", f"j{q % 500}") for q in range(1, 20_001)])
    plan = con.execute(f"EXPLAIN ANALYZE {STORED_EVENTS}", ["j3", "prod", "job", 20_000]).fetchall()[0][1]
    assert "Index Scan" in plan, plan


def test_an_aggregate_past_the_index_scan_limit_is_read_whole(con: duckdb.DuckDBPyConnection) -> None:
    """More hits than DuckDB's index_scan_max_count (2,048): a scan then, the same rows."""
    _add(con, [(q, "prod", "schedule", "busy" if q % 2 else "calm") for q in range(1, 6001)])
    got, _ = stored_events(con, "prod", "schedule", "busy", 6000)
    assert [q for q, _, _ in got] == list(range(1, 6001, 2))


def test_ensure_adds_the_index_to_a_file_made_without_it(tmp_path: object) -> None:
    """A read model written before the index existed gets it in place, rows untouched."""
    path = f"{tmp_path}/old.duckdb"
    with duckdb.connect(path) as c:
        schema.ensure(c)
        c.execute("DROP INDEX events_aggregate_id")
        _add(c, [(1, "prod", "job", "j1"), (2, "prod", "job", "j2")])
    with duckdb.connect(path) as c:
        schema.ensure(c)
        names = [r[0] for r in c.execute("SELECT index_name FROM duckdb_indexes()").fetchall()]
        assert names == ["events_aggregate_id"]
        assert [q for q, _, _ in stored_events(c, "prod", "job", "j2", 2)[0]] == [2]
