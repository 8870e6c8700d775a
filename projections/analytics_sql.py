"""Read-only ad-hoc SQL over the read models, in a sandbox the engine itself locks down.

The query never runs on the projector's database. It runs in a fresh in-memory DuckDB
opened with external access disabled (no files, URLs, ATTACH, COPY, INSTALL or LOAD) and
its configuration locked (no SET), holding only the tables the query names, only the
columns it names, as Arrow streams (or copies, for a table read twice); for a domain token
they hold only its domain's rows, so there is nothing of another domain to find. Statements
other than one SELECT are refused before that.
"""

from __future__ import annotations

import base64
import json
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as clock
from decimal import Decimal
from typing import Any
from uuid import UUID

import duckdb

from events.base import DomainError
from projections import schema

Cursor = duckdb.DuckDBPyConnection

MAX_ROWS = 100_000
TIMEOUT_S = 10.0
STREAM_BATCH_ROWS = 100_000
SANDBOX_CONFIG: dict[str, Any] = {
    "enable_external_access": False,
    "python_enable_replacements": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "allow_unsigned_extensions": False,
    "threads": 2,
    "memory_limit": "2GB",
}
# The tables a domain token may read and the column naming their domain. `domains` holds every
# domain's token records and is the admin's only.
DOMAIN_TABLES = {name: "domain" for name in schema.ALL_TABLES if name != "domains"}
ADMIN_TABLES = [*schema.ALL_TABLES]


class SqlRefused(DomainError):
    code = "sql_refused"


class SqlFailed(DomainError):
    code = "sql_error"


def visible_tables(domain: str | None) -> list[str]:
    """What a caller can query: every table for the admin (domain None), else its domain's views."""
    return sorted(ADMIN_TABLES if domain is None else DOMAIN_TABLES)


def _sandbox() -> duckdb.DuckDBPyConnection:
    box = duckdb.connect(":memory:", config=SANDBOX_CONFIG)
    box.execute("SET TimeZone = 'UTC'")  # a setting of the ICU extension, unknown to connect()
    box.execute("SET lock_configuration = true")  # from here on, no SET or PRAGMA changes anything
    return box


def _check_statement(box: duckdb.DuckDBPyConnection, sql: str) -> None:
    try:
        statements = box.extract_statements(sql)
    except duckdb.Error as exc:
        raise SqlRefused(f"cannot parse the query: {_first_line(exc)}") from exc
    if len(statements) != 1:
        raise SqlRefused(f"give exactly one statement, not {len(statements)}")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise SqlRefused(
            f"only SELECT queries are allowed: this is a {kind.name} statement, and the read models "
            "are read-only (no writes, ATTACH, COPY, INSTALL, LOAD, PRAGMA or SET)"
        )


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


@dataclass(frozen=True)
class Reads:
    """What a SELECT reads, from the engine's own parse tree: table names, and the names it uses
    as columns (None when it takes whole rows: `*`, COLUMNS(…), or a table or alias as a value)."""

    tables: set[str]
    columns: set[str] | None


def reads(box: duckdb.DuckDBPyConnection, sql: str) -> Reads:
    rows = box.execute("SELECT json_serialize_sql(?)", [sql]).fetchall()
    tree = json.loads(rows[0][0]) if rows else {}
    if tree.get("error"):
        raise SqlRefused(f"cannot parse the query: {tree.get('error_message', 'unknown error')}")
    tables: set[str] = set()
    aliases: set[str] = set()
    refs: list[list[str]] = []
    whole = False
    for n in _walk(tree):
        if n.get("type") == "BASE_TABLE" and n.get("schema_name", "") in ("", "main"):
            tables.add(str(n.get("table_name", "")).lower())
            aliases.add(str(n.get("alias", "")).lower())
        elif n.get("class") == "STAR":
            whole = True
        elif n.get("class") == "COLUMN_REF":
            refs.append([str(c).lower() for c in n.get("column_names", [])])
        if n.get("type") == "JOIN":
            refs += [[str(c).lower()] for c in n.get("using_columns", [])]
    names = tables | aliases
    columns: set[str] = set()
    for ref in refs:
        if len(ref) == 1 and ref[0] in names:
            whole = True  # a table or its alias as a value: the whole row
        elif len(ref) > 1 and ref[0] in names:
            columns.update(ref[1:])  # qualified: `r.name`
        else:
            columns.update(ref)  # a column, or a struct column's field
    return Reads(tables, None if whole else columns)


def _load(
    source: Cursor,
    box: duckdb.DuckDBPyConnection,
    wanted: Reads,
    domain: str | None,
    stream: bool,
    opened: list[Cursor],
) -> None:
    """Hand the named tables in, only the columns the query names: whole rows cost ~50x more
    (`state` JSON and list columns), 2.7 s instead of 50 ms for 1,000,000 `runs` rows. With
    `stream`, each table is an Arrow stream read as the query goes (memory stays bounded and
    `LIMIT 10` reads a little), on a cursor of its own, added to `opened` to be interrupted or
    closed; a stream can be scanned once only, so without `stream` the tables are copied in whole."""
    for name in sorted(wanted.tables):
        have = schema.ALL_TABLES[name].names
        cols = have if wanted.columns is None else [c for c in have if c.lower() in wanted.columns]
        picked = ", ".join(f'"{c}"' for c in cols or have[:1])  # count(*) alone still needs the rows
        cur = source.cursor()
        opened.append(cur)
        if domain is None:
            rel = cur.sql(f"SELECT {picked} FROM {name}")
        else:
            rel = cur.sql(f"SELECT {picked} FROM {name} WHERE {DOMAIN_TABLES[name]} = ?", params=[domain])
        box.register(name, rel.to_arrow_reader(STREAM_BATCH_ROWS) if stream else rel.to_arrow_table())


def _execute(
    box: duckdb.DuckDBPyConnection, sql: str, max_rows: int
) -> tuple[list[str], list[str], list[Any]]:
    result = box.execute(sql)
    columns = [d[0] for d in result.description or []]
    types = [str(d[1]) for d in result.description or []]
    return columns, types, result.fetchmany(max_rows + 1)


def _close(cursors: list[Cursor]) -> None:
    for cur in cursors:
        cur.close()
    cursors.clear()


def run_sql(
    source: Cursor,
    sql: str,
    domain: str | None,
    max_rows: int = MAX_ROWS,
    timeout_s: float = TIMEOUT_S,
) -> dict[str, Any]:
    """Run one SELECT; `domain` None is the admin (every table, every domain). At most `max_rows`
    rows come back (`truncated` says whether there were more); past `timeout_s` it is stopped."""
    started = time.perf_counter()
    box = _sandbox()
    opened: list[Cursor] = []
    timed_out = threading.Event()

    def stop() -> None:
        timed_out.set()
        box.interrupt()
        for cur in list(opened):
            cur.interrupt()

    timer = threading.Timer(timeout_s, stop)
    timer.daemon = True
    try:
        _check_statement(box, sql)
        found = reads(box, sql)
        wanted = Reads(found.tables & set(visible_tables(domain)), found.columns)
        timer.start()
        try:
            _load(source, box, wanted, domain, True, opened)
            try:
                columns, types, rows = _execute(box, sql, max_rows)
            except duckdb.InvalidInputException as exc:
                if "already been consumed" not in str(exc) or timed_out.is_set():
                    raise
                # A table read twice (a self-join, a CTE used twice): copy it in whole, and again.
                _close(opened)
                _load(source, box, wanted, domain, False, opened)
                columns, types, rows = _execute(box, sql, max_rows)
        finally:
            timer.cancel()
    except duckdb.Error as exc:
        if timed_out.is_set():
            raise SqlFailed(f"the query ran longer than {timeout_s:g} s and was stopped") from exc
        if isinstance(exc, duckdb.PermissionException):
            raise SqlRefused(
                f"refused: reading files, URLs or extensions is not allowed ({_first_line(exc)})"
            ) from exc
        if isinstance(exc, duckdb.InvalidInputException) and "configuration has been locked" in str(exc):
            raise SqlRefused(f"refused: settings cannot be changed ({_first_line(exc)})") from exc
        if isinstance(exc, duckdb.CatalogException):
            tables = ", ".join(visible_tables(domain))
            raise SqlFailed(f"{_first_line(exc)} (tables you can query: {tables})") from exc
        raise SqlFailed(_first_line(exc)) from exc
    finally:
        box.close()
        _close(opened)
    truncated = len(rows) > max_rows
    rows = rows[:max_rows]
    return {
        "columns": columns,
        "types": types,
        "rows": [[_plain(v) for v in row] for row in rows],
        "row_count": len(rows),
        "truncated": truncated,
        "elapsed_ms": round((time.perf_counter() - started) * 1000, 1),
    }


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _plain(value: Any) -> Any:
    """A JSON-ready value: times as ISO text, intervals as seconds, decimals as floats, bytes as base64."""
    if isinstance(value, datetime | date | clock):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN or infinity: "nan", "inf", "-inf"
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value
