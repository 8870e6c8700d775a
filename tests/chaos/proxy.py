"""TCP proxies on loopback that can be cut: a network partition without network namespaces.

Cutting a proxy is a *silent* partition, as a pulled cable is: its connections stay open
but carry nothing, and new ones are accepted and then carry nothing either, so each side
only learns of it from its own timeouts (pings, route heartbeats). Healing closes the
stalled connections, so both sides reconnect at once, as after a real partition heals.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterable

from services.runtime.ports import free_port

CHUNK = 64 * 1024


class Proxy:
    """Forwards 127.0.0.1:`port` to 127.0.0.1:`target`, until cut."""

    def __init__(self, target: int, loop: asyncio.AbstractEventLoop) -> None:
        self.target = target
        self.port = free_port()
        self.cut = False
        self._loop = loop
        self._open: set[asyncio.StreamWriter] = set()
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            self._open.discard(writer)
            return
        self._open.add(up_writer)
        await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        for w in (writer, up_writer):
            self._open.discard(w)
            w.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await reader.read(CHUNK):
                while self.cut:  # the cable is out: hold the bytes, send nothing
                    await asyncio.sleep(0.05)
                    if writer.is_closing():
                        return
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(OSError, RuntimeError):
            writer.close()

    def heal_connections(self) -> None:
        for w in list(self._open):
            w.close()
        self._open.clear()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self.heal_connections()


class Proxies:
    """A set of proxies served by one background event loop (the tests themselves are sync)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.all: list[Proxy] = []

    def add(self, target: int) -> Proxy:
        proxy = Proxy(target, self.loop)
        asyncio.run_coroutine_threadsafe(proxy.start(), self.loop).result(10)
        self.all.append(proxy)
        return proxy

    def cut(self, proxies: Iterable[Proxy]) -> None:
        for p in proxies:
            p.cut = True

    def heal(self, proxies: Iterable[Proxy]) -> None:
        def heal_all() -> None:
            for p in proxies:
                p.cut = False
                p.heal_connections()

        self.loop.call_soon_threadsafe(heal_all)

    def close(self) -> None:
        for p in self.all:
            asyncio.run_coroutine_threadsafe(p.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
