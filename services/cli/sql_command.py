"""`jobstream sql "SELECT …"`: read-only SQL over the read models, through the API.

The API runs the query in a locked-down DuckDB sandbox (see projections/analytics_sql.py):
the admin token reads every table, a domain token its own domain's rows only. This command
only sends the query and renders the answer as a table, CSV, JSON or Parquet.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from services.cli import render
from services.cli.client import EXIT_BAD_INPUT, Client
from services.cli.client_commands import Token, Url, _call, fail


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"
    parquet = "parquet"


def sql(
    query: Annotated[str, typer.Argument(help="one SELECT; tables: jobs, runs, attempts, events, …")],
    output_format: Annotated[
        Format, typer.Option("--format", help="table, csv, json or parquet")
    ] = Format.table,
    output: Annotated[Path | None, typer.Option("--output", help="write here (needed for parquet)")] = None,
    max_rows: Annotated[int, typer.Option(min=1, max=100_000, help="row cap")] = 100_000,
    url: Url = None,
    token: Token = None,
) -> None:
    """Run one read-only SELECT against the read models (10 s timeout, at most 100,000 rows)."""
    if output_format is Format.parquet and output is None:
        raise fail("--format parquet needs --output FILE", EXIT_BAD_INPUT)
    answer = _call(Client.from_env(url, token).post, "/sql", {"sql": query, "max_rows": max_rows})
    columns, types, rows = answer["columns"], answer["types"], answer["rows"]
    if output_format is Format.parquet:
        assert output is not None
        _write_parquet(output, columns, types, rows)
    else:
        text = _render(output_format, columns, rows)
        if output is not None:
            output.write_text(text)
        elif text:
            sys.stdout.write(text)
    note = f"{answer['row_count']} rows"
    if answer["truncated"]:
        note += f" (truncated: the query returns more than {max_rows}; add LIMIT or raise --max-rows)"
    typer.echo(f"{note}, {answer['elapsed_ms']} ms, scope: {answer['scope']}", err=True)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


def _render(fmt: Format, columns: list[str], rows: list[list[Any]]) -> str:
    if fmt is Format.json:
        return json.dumps([dict(zip(columns, row, strict=True)) for row in rows], indent=2) + "\n"
    if fmt is Format.csv:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(columns)
        writer.writerows([[_cell(v) for v in row] for row in rows])
        return buf.getvalue()
    table = Table(box=None, header_style="bold")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*[Text(_cell(v)) for v in row])  # Text: a value is never read as markup
    out = render.console()
    with out.capture() as captured:
        out.print(table)
    return captured.get()


def _typed(values: list[Any], duck_type: str) -> list[Any]:
    """JSON carried times as ISO text: back to datetimes, so Parquet keeps them as timestamps."""
    if duck_type.startswith("TIMESTAMP"):
        return [datetime.fromisoformat(v) if isinstance(v, str) else v for v in values]
    if duck_type == "DATE":
        return [date.fromisoformat(v) if isinstance(v, str) else v for v in values]
    return values


def _arrow_type(duck_type: str) -> Any:
    """The Arrow type of a DuckDB column, for the common ones; None lets Arrow infer it."""
    import pyarrow as pa

    types = {
        "VARCHAR": pa.string(), "BIGINT": pa.int64(), "INTEGER": pa.int32(), "HUGEINT": pa.float64(),
        "DOUBLE": pa.float64(), "FLOAT": pa.float32(), "BOOLEAN": pa.bool_(), "DATE": pa.date32(),
        "TIMESTAMP WITH TIME ZONE": pa.timestamp("us", tz="UTC"), "TIMESTAMP": pa.timestamp("us"),
        "VARCHAR[]": pa.list_(pa.string()), "BIGINT[]": pa.list_(pa.int64()),
    }  # fmt: skip
    return types.get(duck_type)


def _write_parquet(path: Path, columns: list[str], types: list[str], rows: list[list[Any]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = {
        name: pa.array(_typed([row[i] for row in rows], types[i]), type=_arrow_type(types[i]))
        for i, name in enumerate(columns)
    }
    try:
        pq.write_table(pa.table(data), path)
    except OSError as exc:
        raise fail(f"cannot write {path}: {exc}", EXIT_BAD_INPUT) from exc
