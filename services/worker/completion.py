"""Completion criteria: what besides the process ending makes an attempt a success."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from events.job import Completion


@dataclass
class StdoutWatch:
    """Matches the criteria's patterns against each stdout line as it streams, in O(1) memory."""

    completion: Completion | None
    must: re.Pattern[str] | None = field(init=False, default=None)
    must_not: re.Pattern[str] | None = field(init=False, default=None)
    must_seen: bool = field(init=False, default=False)
    must_not_seen: str | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.completion:
            if self.completion.stdout_match:
                self.must = re.compile(self.completion.stdout_match)
            if self.completion.stdout_not_match:
                self.must_not = re.compile(self.completion.stdout_not_match)

    def feed(self, line: str) -> None:
        if self.must is not None and not self.must_seen and self.must.search(line):
            self.must_seen = True
        if self.must_not is not None and self.must_not_seen is None and self.must_not.search(line):
            self.must_not_seen = line[:200]


def judge(completion: Completion | None, exit_code: int, watch: StdoutWatch) -> str | None:
    """None when the attempt succeeded, else the reason it failed, for people."""
    allowed = completion.exit_codes if completion else [0]
    if exit_code not in allowed:
        return f"exit code {exit_code} not in allowed exit codes {allowed}"
    if watch.must is not None and not watch.must_seen:
        return f"stdout never matched required pattern {watch.must.pattern!r}"
    if watch.must_not is not None and watch.must_not_seen is not None:
        return f"stdout matched forbidden pattern {watch.must_not.pattern!r}: {watch.must_not_seen!r}"
    return None
