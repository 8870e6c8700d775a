"""One stored message as `jobstream events` prints, exports and imports it; JSON lines and Parquet files.

A record keeps what a restore needs byte for byte (stream, sequence, subject, headers, the raw
payload) and, for people and SQL, the stream's timestamp, the event type and the payload decoded
as JSON. Pure: no NATS here.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from events.subjects import SubjectError, parse_event

Format = Literal["jsonl", "parquet"]
PARQUET_ROWS = 10_000  # rows per row group: what the writer holds in memory

PARQUET_SCHEMA = pa.schema(
    [
        ("stream", pa.string()),
        ("seq", pa.int64()),
        ("subject", pa.string()),
        ("time", pa.timestamp("ns", tz="UTC")),
        ("headers", pa.string()),  # a JSON object
        ("type", pa.string()),
        ("payload", pa.string()),  # the payload as JSON text (null if it is not JSON)
        ("data", pa.binary()),  # the payload's exact bytes
    ]
)


class RecordError(ValueError):
    """A file line or row that is not a record; the message names where."""


@dataclass(frozen=True, slots=True)
class Record:
    stream: str
    seq: int
    subject: str
    time_ns: int  # when the stream stored it
    headers: dict[str, str]
    data: bytes

    @property
    def type(self) -> str | None:
        """The event type the subject names (None off the event subjects, e.g. output)."""
        try:
            return parse_event(self.subject).type
        except SubjectError:
            return None

    @property
    def time(self) -> datetime:
        return datetime.fromtimestamp(self.time_ns / 1e9, UTC)

    def payload(self) -> Any:
        """The payload decoded as JSON, or None when it is not JSON."""
        try:
            return _decode(self.data)
        except msgspec.DecodeError:
            return None

    def payload_json(self) -> bytes | None:
        """The payload's own bytes when they are JSON (so they can be embedded as they are)."""
        try:
            _decode(self.data)
        except msgspec.DecodeError:
            return None
        return self.data

    def json_line(self) -> bytes:
        """The record as one line of a JSON lines export, the payload embedded as it was stored."""
        raw = self.payload_json()
        payload = None if raw is None else msgspec.Raw(raw)
        return _encode(
            {
                "stream": self.stream, "seq": self.seq, "subject": self.subject, "time": iso(self.time_ns),
                "headers": self.headers, "type": self.type, "payload": payload,
                "data": base64.b64encode(self.data).decode(),
            }
        ) + b"\n"  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {
            "stream": self.stream, "seq": self.seq, "subject": self.subject, "time": iso(self.time_ns),
            "headers": self.headers, "type": self.type, "payload": self.payload(),
            "data": base64.b64encode(self.data).decode(),
        }  # fmt: skip


_decode = msgspec.json.decode
_encode = msgspec.json.Encoder().encode


@functools.lru_cache(maxsize=64)
def _second(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def iso(time_ns: int) -> str:
    """RFC 3339 in UTC with nanoseconds: the stream's own precision. (A log's times come in order,
    many in each second, so the second's text is cached: strftime was a visible share of export.)"""
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    return f"{_second(seconds)}.{nanos:09d}Z"


def parse_iso_ns(text: str) -> int:
    """The inverse of `iso` (also takes any ISO 8601 time with a zone, at microseconds)."""
    head, dot, frac = text.rstrip("Z").partition(".")
    if text.endswith("Z") and dot and frac.isdigit():
        whole = datetime.fromisoformat(head).replace(tzinfo=UTC)
        return int(whole.timestamp()) * 1_000_000_000 + int(frac.ljust(9, "0")[:9])
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError(f"time {text!r} has no zone")
    return int(parsed.timestamp() * 1_000_000) * 1000


def from_dict(row: dict[str, Any], where: str) -> Record:
    """A record from a JSON line or a Parquet row; RecordError naming `where` if it is not one."""
    try:
        headers = row.get("headers") or {}
        if isinstance(headers, str):
            headers = _decode(headers)
        data = row["data"]
        raw = base64.b64decode(data, validate=True) if isinstance(data, str) else bytes(data)
        when = row["time"]
        time_ns = parse_iso_ns(when) if isinstance(when, str) else _ns(when)
        record = Record(
            stream=str(row["stream"]), seq=int(row["seq"]), subject=str(row["subject"]), time_ns=time_ns,
            headers={str(k): str(v) for k, v in dict(headers).items()}, data=raw,
        )  # fmt: skip
    except (KeyError, TypeError, ValueError, msgspec.DecodeError) as exc:
        missing = f"no field {exc}" if isinstance(exc, KeyError) else str(exc)
        raise RecordError(f"{where}: not an exported event ({missing})") from None
    if not record.stream or not record.subject or record.seq < 1:
        raise RecordError(f"{where}: not an exported event (empty stream or subject, or seq < 1)")
    return record


def _ns(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, datetime):
        return int(value.timestamp() * 1_000_000) * 1000
    raise ValueError(f"time {value!r} is not a time")


class Writer:
    """Writes records to a file (or stdout for JSON lines) in the chosen format, in bounded memory."""

    def __init__(self, path: str, fmt: Format, out: IO[bytes] | None = None) -> None:
        self.fmt = fmt
        self.count = 0
        self._rows: list[Record] = []
        self._text: IO[bytes] | None = None
        self._own = False
        self._parquet: pq.ParquetWriter | None = None
        if fmt == "jsonl":
            if path == "-":
                self._text = out
            else:
                self._text = open(path, "wb")  # noqa: SIM115 (closed in close())
                self._own = True
        else:
            self._parquet = pq.ParquetWriter(path, PARQUET_SCHEMA, compression="zstd")

    def write(self, record: Record) -> None:
        self.count += 1
        if self._text is not None:
            self._text.write(record.json_line())
            return
        self._rows.append(record)
        if len(self._rows) >= PARQUET_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._parquet is None or not self._rows:
            return
        rows = self._rows
        payloads = [r.payload_json() for r in rows]
        table = pa.table(
            {
                "stream": [r.stream for r in rows],
                "seq": [r.seq for r in rows],
                "subject": [r.subject for r in rows],
                "time": pa.array([r.time_ns for r in rows], pa.int64()).cast(
                    PARQUET_SCHEMA.field("time").type
                ),
                "headers": [_encode(r.headers).decode() for r in rows],
                "type": [r.type for r in rows],
                "payload": [None if p is None else p.decode() for p in payloads],
                "data": [r.data for r in rows],
            },
            schema=PARQUET_SCHEMA,
        )
        self._parquet.write_table(table)
        self._rows = []

    def close(self) -> None:
        if self._parquet is not None:
            self._flush()
            self._parquet.close()
        elif self._text is not None:
            self._text.flush()
            if self._own:
                self._text.close()


def sniff_format(path: Path) -> Format:
    """Parquet files start with `PAR1`; anything else is read as JSON lines."""
    with path.open("rb") as f:
        return "parquet" if f.read(4) == b"PAR1" else "jsonl"


def read_file(path: Path) -> Iterator[Record]:
    """Every record of an export, in file order, read in bounded memory."""
    if sniff_format(path) == "parquet":
        try:
            source = pq.ParquetFile(path)
        except (OSError, pa.ArrowException) as exc:
            raise RecordError(f"{path}: not a readable Parquet file ({exc})") from None
        row = 0
        for batch in source.iter_batches(batch_size=PARQUET_ROWS):
            table = pa.Table.from_batches([batch])
            if "time" in table.column_names:  # as nanoseconds: Python's datetime stops at microseconds
                at = table.column_names.index("time")
                table = table.set_column(at, "time", table.column("time").cast(pa.int64()))
            for item in table.to_pylist():
                row += 1
                yield from_dict(item, f"{path} row {row}")
        return
    with path.open("rb") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                item = _decode(line)
            except msgspec.DecodeError:
                raise RecordError(f"{path} line {number}: not JSON") from None
            if not isinstance(item, dict):
                raise RecordError(f"{path} line {number}: not a JSON object")
            yield from_dict(item, f"{path} line {number}")
