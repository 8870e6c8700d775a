"""The per-domain bound broker-auth puts on the reads and publishes it serves for tokens."""

from __future__ import annotations

import asyncio

from services.broker.bounds import PerDomain


async def test_a_domain_at_its_limit_is_refused_while_others_go_on() -> None:
    bound = PerDomain(2)
    release = asyncio.Event()
    ran: list[str] = []

    async def work(domain: str) -> None:
        ran.append(domain)
        await release.wait()

    assert bound.start("a", lambda: work("a")) and bound.start("a", lambda: work("a"))
    assert not bound.start("a", lambda: work("a"))  # refused, and not run
    assert bound.start("b", lambda: work("b"))
    await asyncio.sleep(0)
    assert sorted(ran) == ["a", "a", "b"]
    release.set()
    for _ in range(3):
        await asyncio.sleep(0)
    assert bound.outstanding == {"a": 0, "b": 0}
    assert bound.start("a", lambda: work("a"))  # room again once the work is done
