"""A schema change without downtime: serve the old read model while the new one is built beside it.

When the file's schema version is not this code's, the projector opens it read-only under a
second name (a hard link, so the old file stays readable after the new one takes its name),
answers from it as it was, and replays the log into `<file>.v<N>.next` with the bulk replay.
Once the new file is within SWITCH_MAX_LAG events of the log, it takes the file's name, the
projector opens it and follows the log from its checkpoint as usual, and the old connection is
closed a few seconds later, when the reads still running on it are done. A restart during the
build resumes the new file from its checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import msgspec

from events.streams import EVENTS_STREAM
from projections import schema
from projections.projector import _load_domains
from projections.replay import Progress, discard, replay, swap_in

if TYPE_CHECKING:
    from projections.projector import Projector

log = logging.getLogger(__name__)

SWITCH_MAX_LAG = 100
OLD_CLOSE_GRACE_S = 5.0
RETRY_WAIT_S = 5.0


def stale_version(path: Path | str) -> int | None:
    """The schema version of the read model at `path` if it holds events and is not this code's."""
    if not Path(path).exists():
        return None
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error:
        return None  # not readable as it is: the projector's own open says why
    try:
        row = con.execute("SELECT seq FROM checkpoint WHERE name = 'schema'").fetchone()
        seq = schema.checkpoint(con)
    except duckdb.Error:
        return None
    finally:
        con.close()
    version = int(row[0]) if row else 1
    return None if version == schema.SCHEMA_VERSION or seq == 0 else version


def _wal(path: Path) -> Path:
    return path.with_name(path.name + ".wal")


class BuildBeside:
    """Serves the old file through `projector` and builds the new one; see the module doc."""

    def __init__(self, projector: Projector, old_version: int) -> None:
        self.projector = projector
        self.old_version = old_version
        self.path = Path(projector.db_path)
        self.old_path = self.path.with_name(f"{self.path.name}.v{old_version}")
        self.next_path = self.path.with_name(f"{self.path.name}.v{schema.SCHEMA_VERSION}.next")
        self.progress = Progress(target_seq=0)
        self.served_seq = 0
        self.switched = False
        self._old: duckdb.DuckDBPyConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._closer: asyncio.TimerHandle | None = None

    def describe(self) -> str:
        return (
            f"serving the schema v{self.old_version} read model at seq {self.served_seq:,} while "
            f"v{schema.SCHEMA_VERSION} is built beside it: {self.progress.describe()}"
        )

    async def start(self) -> None:
        await asyncio.to_thread(self._open_old)
        self.progress.target_seq = await self._last_seq()
        log.warning("%s", self.describe())
        self._task = asyncio.create_task(self._build(), name="read-model-build")

    def _open_old(self) -> None:
        for name, link in ((self.path, self.old_path), (_wal(self.path), _wal(self.old_path))):
            link.unlink(missing_ok=True)
            if name.exists():
                try:
                    os.link(name, link)
                except OSError:  # no hard links here: a copy serves as well, slower to make
                    shutil.copyfile(name, link)
        con = duckdb.connect(str(self.old_path), read_only=True)
        con.execute("SET TimeZone = 'UTC'")
        self.served_seq = schema.checkpoint(con)
        try:
            domains = _load_domains(con)
        except (duckdb.Error, msgspec.DecodeError, msgspec.ValidationError):
            log.warning(
                "the old read model's domains do not decode; only the admin token works until the switch"
            )
            domains = {}
        self._old = con
        p = self.projector
        p._con = con
        p.applied_seq = self.served_seq
        p._set_domains(domains)

    async def _build(self) -> None:
        while True:
            try:
                if await asyncio.to_thread(stale_version, self.next_path) is not None:
                    discard(self.next_path)  # left by a build of yet another version
                prog = await replay(self.projector.nc, self.next_path, progress=self.progress, pause_gc=False)
                if await self._last_seq() - prog.seq > SWITCH_MAX_LAG:
                    continue  # the log grew meanwhile: replay the rest, from the new file's checkpoint
                await self._switch()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("building the read model beside the old one failed; retrying")
                await asyncio.sleep(RETRY_WAIT_S)

    async def _last_seq(self) -> int:
        return int((await self.projector.nc.jetstream().stream_info(EVENTS_STREAM)).state.last_seq)

    async def _switch(self) -> None:
        p = self.projector

        def swap() -> None:
            with p._apply_lock:
                swap_in(self.next_path, self.path)
                _wal(self.path).unlink(missing_ok=True)
                p._con = p._open()

        await asyncio.to_thread(swap)
        self.switched = True
        log.warning(
            "switched to the schema v%d read model at seq %d (%s)",
            schema.SCHEMA_VERSION,
            p.applied_seq,
            self.progress.describe(),
        )
        await p._follow()
        p.building = None
        p._release_waiters()  # those waiting for what the new file already holds
        self._closer = asyncio.get_running_loop().call_later(OLD_CLOSE_GRACE_S, self._close_old)

    def _close_old(self) -> None:
        if self._old is not None:
            with contextlib.suppress(duckdb.Error):
                self._old.close()
            self._old = None
        for link in (self.old_path, _wal(self.old_path)):
            link.unlink(missing_ok=True)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._closer is not None:
            self._closer.cancel()
        if not self.switched:
            self.projector._con = None  # the projector must not close it twice
        self._close_old()
