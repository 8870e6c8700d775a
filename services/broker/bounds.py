"""Per-domain bounds on the requests broker-auth serves for domain tokens."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Coroutine
from typing import Any


class PerDomain:
    """At most `limit` requests of one domain outstanding, each run as its own task: a domain
    that floods is refused ("retry") before it can starve the others."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.outstanding: dict[str, int] = defaultdict(int)
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, domain: str, work: Callable[[], Coroutine[Any, Any, None]]) -> bool:
        """Run `work()` in a task if the domain has room; False (and nothing run) if not."""
        if self.outstanding[domain] >= self.limit:
            return False
        self.outstanding[domain] += 1
        task = asyncio.create_task(work())
        self._tasks.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            self._tasks.discard(finished)
            self.outstanding[domain] -= 1

        task.add_done_callback(done)
        return True
