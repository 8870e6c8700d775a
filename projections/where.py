"""A WHERE clause built filter by filter, for the list and count queries of the read model."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from events.base import DomainError


class InvalidQuery(DomainError):
    code = "invalid_query"


@dataclass
class Where:
    """Conditions joined by AND, with their parameters in the same order; every filter whose
    value is None adds nothing, so a query states its filters once, whichever are given."""

    conds: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)

    @classmethod
    def in_domain(cls, domain: str) -> Where:
        return cls(["domain = ?"], [domain])

    def add(self, cond: str, *params: Any) -> None:
        self.conds.append(cond)
        self.params += params

    def equals(self, column: str, value: Any) -> None:
        if value is not None:
            self.add(f"{column} = ?", value)

    def has(self, list_column: str, value: str | None) -> None:
        if value is not None:
            self.add(f"list_contains({list_column}, ?)", value)

    def one_of(self, column: str, text: str, allowed: Iterable[str]) -> None:
        """`text` is a comma-separated choice among `allowed`; anything else is named in the error."""
        choices = list(allowed)
        wanted = [s for s in text.split(",") if s]
        unknown = [s for s in wanted if s not in choices]
        if unknown or not wanted:
            raise InvalidQuery(
                f"unknown {column} {', '.join(unknown) or text!r}; one of {', '.join(choices)}"
            )
        self.add(f"{column} IN ({', '.join('?' for _ in wanted)})", *wanted)

    def between(self, column: str, since: datetime | None, until: datetime | None) -> None:
        """`since` inclusive, `until` exclusive; a time without a zone is UTC, as everywhere in the
        read model."""
        since = since.replace(tzinfo=UTC) if since is not None and since.tzinfo is None else since
        until = until.replace(tzinfo=UTC) if until is not None and until.tzinfo is None else until
        if since is not None and until is not None and since >= until:
            raise InvalidQuery(f"since ({since.isoformat()}) must be before until ({until.isoformat()})")
        if since is not None:
            self.add(f"{column} >= ?", since)
        if until is not None:
            self.add(f"{column} < ?", until)

    @property
    def sql(self) -> str:
        return " AND ".join(self.conds) or "true"
