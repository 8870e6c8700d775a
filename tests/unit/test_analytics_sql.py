"""`jobstream sql`'s sandbox: one SELECT, nothing of the file system, the network or the settings,
and a domain's rows only, on a real DuckDB read model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from projections import schema
from projections.analytics_sql import Reads, SqlFailed, SqlRefused, _plain, reads, run_sql
from tests.unit.test_analytics import fleet


@pytest.fixture
def source(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect(str(tmp_path / "rm.duckdb"))
    schema.ensure(con)
    fleet(con)
    (tmp_path / "secret.csv").write_text("a,b\n1,2\n")
    cur = con.cursor()
    yield cur
    cur.close()
    con.close()


REFUSED = [
    ("INSERT INTO runs SELECT * FROM runs", "INSERT statement"),
    ("DELETE FROM jobs", "DELETE statement"),
    ("UPDATE jobs SET status = 'x'", "UPDATE statement"),
    ("CREATE TABLE t AS SELECT 1", "CREATE statement"),
    ("DROP TABLE jobs", "DROP statement"),
    ("ATTACH '{tmp}/other.duckdb' AS o", "ATTACH statement"),
    ("COPY jobs TO '{tmp}/out.csv'", "COPY statement"),
    ("INSTALL httpfs", "statement"),
    ("LOAD httpfs", "LOAD statement"),
    ("PRAGMA enable_profiling", "PRAGMA statement"),
    ("SET threads = 1", "SET statement"),
    ("SELECT 1; SELECT 2", "exactly one statement"),
    ("SELECT * FROM read_csv('{tmp}/secret.csv')", "reading files, URLs or extensions is not allowed"),
    ("SELECT * FROM '{tmp}/secret.csv'", "reading files, URLs or extensions is not allowed"),
    ("SELECT * FROM read_text('/etc/hostname')", "reading files, URLs or extensions is not allowed"),
    ("SELECT * FROM glob('/etc/*')", "reading files, URLs or extensions is not allowed"),
    ("SELECT * FROM read_parquet('https://example.com/x.parquet')", "reading files, URLs"),
    ("SELECT * FROM 'http://127.0.0.1:1/x.csv'", "reading files, URLs or extensions is not allowed"),
    ("SELECT * FROM query('SELECT * FROM read_csv(''{tmp}/secret.csv'')')", "reading files, URLs"),
    ("SELEC nonsense", "cannot parse"),
]


@pytest.mark.parametrize(("sql", "named"), REFUSED, ids=[r[0][:40] for r in REFUSED])
def test_everything_but_one_select_of_the_read_models_is_refused(
    source: duckdb.DuckDBPyConnection, tmp_path: Path, sql: str, named: str
) -> None:
    before = source.execute("SELECT count(*) FROM jobs").fetchone()
    with pytest.raises(SqlRefused, match=named):
        run_sql(source, sql.format(tmp=tmp_path), domain=None)
    assert source.execute("SELECT count(*) FROM jobs").fetchone() == before
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "other.duckdb").exists()


def test_a_domain_sees_only_its_own_rows_whatever_it_asks(source: duckdb.DuckDBPyConnection) -> None:
    out = run_sql(source, "SELECT domain, count(*) AS n FROM runs GROUP BY domain", domain="b")
    assert out["rows"] == [["b", 1]]
    out = run_sql(source, "SELECT count(*) FROM jobs WHERE domain = 'a'", domain="b")
    assert out["rows"] == [[0]]
    union = "SELECT domain FROM events UNION ALL SELECT domain FROM attempts"
    out = run_sql(source, f"SELECT count(*) FROM ({union}) WHERE domain <> 'b'", domain="b")
    assert out["rows"] == [[0]]
    with pytest.raises(SqlFailed, match="domains does not exist"):
        run_sql(source, "SELECT * FROM domains", domain="b")
    admin = run_sql(source, "SELECT domain, count(*) FROM runs GROUP BY ALL ORDER BY 1", domain=None)
    assert admin["rows"] == [["a", 7], ["b", 1]]


def test_results_carry_types_json_ready_values_and_a_row_cap(source: duckdb.DuckDBPyConnection) -> None:
    out = run_sql(
        source, "SELECT job_id, dispatched_at, tags FROM runs ORDER BY job_id, attempt", "a", max_rows=3
    )
    assert out["columns"] == ["job_id", "dispatched_at", "tags"]
    assert out["types"][1].startswith("TIMESTAMP")
    assert out["row_count"] == 3 and out["truncated"] is True
    assert out["rows"][0] == ["e0", "2026-01-01T00:00:01+00:00", ["nightly"]]
    whole = run_sql(source, "WITH r AS (SELECT * FROM runs) SELECT count(*) FROM r", "a")
    assert whole["rows"] == [[7]] and whole["truncated"] is False


def test_unknown_tables_and_bad_sql_name_the_problem(source: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(SqlFailed, match="tables you can query: attempts, events, jobs"):
        run_sql(source, "SELECT * FROM nope", "a")
    with pytest.raises(SqlFailed, match="colour"):
        run_sql(source, "SELECT colour FROM runs", "a")


def test_a_query_running_past_the_timeout_is_stopped(source: duckdb.DuckDBPyConnection) -> None:
    slow = "SELECT count(*) FROM range(100000000) a, range(100000) b WHERE a.range + b.range = -1"
    with pytest.raises(SqlFailed, match=r"longer than 0\.5 s"):
        run_sql(source, slow, None, timeout_s=0.5)


SAME_AS_DIRECT = [
    "SELECT count(*) FROM runs",
    "SELECT * FROM runs ORDER BY job_id, attempt",
    "SELECT * EXCLUDE (tags) FROM runs ORDER BY job_id, attempt",
    "SELECT COLUMNS('.*_s') FROM runs ORDER BY job_id, attempt",
    "SELECT r FROM runs r ORDER BY r.job_id, r.attempt",
    "SELECT r.name, max(r.duration_s) FROM runs AS r GROUP BY ALL ORDER BY 1",
    "SELECT j.name, count(*) FROM jobs j JOIN runs ON runs.job_id = j.id GROUP BY ALL ORDER BY ALL",
    "SELECT domain, count(*) FROM jobs JOIN runs USING (domain) GROUP BY ALL ORDER BY ALL",
    "WITH slow AS (SELECT duration_s AS d FROM runs WHERE duration_s > 20) SELECT d FROM slow ORDER BY d",
    "SELECT list_transform(tags, lambda t: upper(t)) AS up FROM runs ORDER BY job_id, attempt",
    "SELECT status, count(*) FILTER (WHERE exit_code <> 0) FROM runs GROUP BY status ORDER BY status",
    "SELECT (SELECT max(attempt) FROM runs) AS most, (SELECT count(*) FROM workers) AS w",
    # Read twice: streamed in first, which a second scan refuses, then copied in whole.
    "SELECT a.job_id, b.attempt FROM runs a JOIN runs b USING (job_id) ORDER BY ALL",
    "WITH r AS (SELECT job_id FROM runs) SELECT count(*) FROM r x, r y WHERE x.job_id = y.job_id",
    "SELECT seq, type FROM events ORDER BY seq LIMIT 3",
]


@pytest.mark.parametrize("sql", SAME_AS_DIRECT)
def test_the_sandbox_answers_what_the_read_model_itself_would(
    source: duckdb.DuckDBPyConnection, sql: str
) -> None:
    """Only the columns a query names are copied in: whatever the query, the answer is the same."""
    direct = [list(row) for row in source.execute(sql).fetchall()]
    out = run_sql(source, sql, None)
    assert out["rows"] == [[_plain(v) for v in row] for row in direct]
    assert out["row_count"] > 0


def test_only_the_named_columns_are_copied_unless_whole_rows_are_asked_for() -> None:
    box = duckdb.connect()
    assert reads(box, "SELECT name FROM runs WHERE duration_s > 1") == Reads({"runs"}, {"name", "duration_s"})
    assert reads(box, "SELECT j.id FROM jobs j JOIN runs USING (domain)").columns == {"id", "domain"}
    for whole in ("SELECT * FROM runs", "SELECT r FROM runs r", "SELECT COLUMNS('x') FROM runs"):
        assert reads(box, whole).columns is None, whole


def test_values_json_cannot_carry_come_back_as_text(source: duckdb.DuckDBPyConnection) -> None:
    out = run_sql(
        source,
        "SELECT 'nan'::DOUBLE, 'inf'::DOUBLE, [-'inf'::DOUBLE], INTERVAL 90 SECOND, 1.5::DECIMAL(3,1)",
        None,
    )
    assert out["rows"] == [["nan", "inf", ["-inf"], 90.0, 1.5]]
    json.dumps(out, allow_nan=False)
