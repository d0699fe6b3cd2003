"""The frame journal: every OCPP frame in and out, for troubleshooting, kept for a while.

Frames are appended to memory on the answer path and written in batches (COPY) a moment later,
so journaling never delays an answer. It is a diagnostic record, not the store of facts: the
frames of the last fraction of a second before a crash can be lost, the events cannot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)

TABLE_SQL = """
CREATE TABLE IF NOT EXISTS ocpp_frames (
    id bigserial PRIMARY KEY,
    station_id text NOT NULL,
    direction text NOT NULL CHECK (direction IN ('in', 'out')),
    at timestamptz NOT NULL,
    message_id text,
    action text,
    frame text NOT NULL);
CREATE INDEX IF NOT EXISTS ocpp_frames_by_station ON ocpp_frames (station_id, at);
CREATE INDEX IF NOT EXISTS ocpp_frames_by_time ON ocpp_frames (at)
"""

_FRAME_TYPES = ("text", "text", "timestamptz", "text", "text", "text")
FLUSH_SECONDS = 0.25
MAX_BUFFERED = 200_000  # if the database is away this long, the oldest frames go first
PRUNE_SECONDS = 3600


# A journaled frame, as its row: station_id, direction, at, message_id, action, frame. A plain
# tuple, since one is made for every frame in and out on the event loop.
Frame = tuple[str, str, datetime, str | None, str | None, str]


class FrameJournal:
    def __init__(self, pool: AsyncConnectionPool, retention_days: int) -> None:
        self._pool = pool
        self._retention_days = retention_days
        self._buffer: deque[Frame] = deque(maxlen=MAX_BUFFERED)
        self._task: asyncio.Task[None] | None = None
        self._next_prune = 0.0  # at once, then hourly

    def record(
        self,
        station_id: str,
        direction: str,
        text: str | bytes,
        message_id: str | None = None,
        action: str | None = None,
    ) -> None:
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        self._buffer.append((station_id, direction, datetime.now(UTC), message_id, action, text))

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="frame-journal")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self._flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                await self._flush()
                if time.monotonic() >= self._next_prune:
                    await self._prune()
            except Exception:
                log.exception("the frame journal could not write; it retries")

    async def _flush(self) -> None:
        if not self._buffer:
            return
        frames = list(self._buffer)
        async with (
            self._pool.connection() as conn,
            conn.cursor() as cursor,
            cursor.copy(
                "COPY ocpp_frames (station_id, direction, at, message_id, action, frame) "
                "FROM STDIN (FORMAT BINARY)"
            ) as copy,
        ):
            copy.set_types(_FRAME_TYPES)  # binary: a quarter of the text format's CPU a frame
            for frame in frames:
                await copy.write_row(frame)
        for _ in frames:
            self._buffer.popleft()

    async def _prune(self) -> None:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "DELETE FROM ocpp_frames WHERE at < now() - make_interval(days => %s)",
                (self._retention_days,),
            )
        self._next_prune = time.monotonic() + PRUNE_SECONDS
        if cursor.rowcount:
            log.info("frame journal: %d frames older than %d days removed", cursor.rowcount,
                     self._retention_days)  # fmt: skip


async def read(
    pool: AsyncConnectionPool,
    station_id: str,
    since: datetime | None,
    until: datetime | None,
    after: int,
    limit: int,
) -> list[dict[str, Any]]:
    """A station's frames in the order they were journaled, after a cursor, in a time window."""
    sql = "SELECT * FROM ocpp_frames WHERE station_id = %s AND id > %s"
    params: list[Any] = [station_id, after]
    if since is not None:
        sql += " AND at >= %s"
        params.append(since)
    if until is not None:
        sql += " AND at < %s"
        params.append(until)
    sql += " ORDER BY id LIMIT %s"
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(sql, [*params, limit])
        return await cursor.fetchall()
