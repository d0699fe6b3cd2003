"""Projection operations: where each projection stands, and rebuilding one from the first event.

A rebuild empties the projection's tables and tracking position in one transaction (readers see
the old rows, then the empty tables, never missing tables) and replays every event of its
topics. If a server runs the projection, the server does the work, asked through the
`projection_rebuilds` table; otherwise the command does it itself. Either way it reports its
progress until the projection has caught up with the events stored when it began.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from eventsourcing.projection import Projection
from psycopg.sql import SQL, Composable, Composed, Identifier

from adapters.parallel_rebuild import rebuild_in_shares
from adapters.postgres import EVENTS_TABLE, REBUILD_REQUESTS_SQL
from adapters.projection_runner import (
    SHARE_PREFIX,
    BatchRunner,
    open_view,
    parallel_rebuild,
    shares_position,
    tracking_table,
)
from domain.service import CSMS
from projections.base import SqlView

ProjectionClass = type[Projection[Any]]

PROGRESS_SECONDS = 0.25
# A parallel rebuild starts a process per core, each importing the code and connecting (about a
# second): worth it from this many events.
PARALLEL_FROM = 20_000
_CREATED = re.compile(r"CREATE (TABLE IF NOT EXISTS|OR REPLACE VIEW) (\w+)", re.IGNORECASE)


Holder = Literal["server", "command"]  # a server runs it, or the command rebuilds it


@dataclass(frozen=True)
class Standing:
    name: str
    position: int  # the notification id of the last event it applied
    behind: int  # events of its topics stored after that
    held_by: Holder | None  # who holds its lock, if anyone


# The application name of the connection by which the command holds a projection's lock while
# it rebuilds it, so that `csms projections` can tell it from a server.
REBUILDING_COMMAND = "csms projections rebuild"


# The events a projection processes: those of its topics, or every event if it names none.
_OF_TOPICS = "(cardinality(%s::text[]) = 0 OR topic = ANY(%s))"


def _topics(projection: ProjectionClass) -> tuple[list[str], list[str]]:
    topics = list(projection.topics)
    return topics, topics


def standing(conn: psycopg.Connection[Any], projection: ProjectionClass, lock_key: int) -> Standing:
    position = _position(conn, projection)
    row = conn.execute(
        f"SELECT count(*) FROM {EVENTS_TABLE} WHERE notification_id > %s AND {_OF_TOPICS}",
        (position, *_topics(projection)),
    ).fetchone()
    holder = conn.execute(
        "SELECT activity.application_name FROM pg_locks AS lock"
        " JOIN pg_stat_activity AS activity USING (pid)"
        " WHERE lock.locktype = 'advisory' AND lock.granted"
        " AND lock.classid = 0 AND lock.objid = %s AND lock.objsubid = 1",
        (lock_key,),
    ).fetchone()
    held_by: Holder | None = None
    if holder is not None:
        held_by = "command" if holder[0] == REBUILDING_COMMAND else "server"
    return Standing(projection.name, position, int(row[0]) if row else 0, held_by)


def _position(conn: psycopg.Connection[Any], projection: ProjectionClass) -> int:
    """The last event the projection applied; during a parallel rebuild, the last one every
    share has applied up to."""
    positions = _tracking_positions(conn, projection)
    if CSMS.name in positions:
        return positions[CSMS.name]
    return shares_position(positions)


def unfinished(conn: psycopg.Connection[Any], projection: ProjectionClass) -> bool:
    """Whether a parallel rebuild of the projection stopped before it was done: its shares'
    positions are left, which the rebuild replaces with the projection's own at the end."""
    return any(name.startswith(SHARE_PREFIX) for name in _tracking_positions(conn, projection))


def _tracking_positions(
    conn: psycopg.Connection[Any], projection: ProjectionClass
) -> dict[str, int]:
    """The positions in the projection's tracking table, by name (the table also holds a row
    of the library's own bookkeeping)."""
    exists = conn.execute("SELECT to_regclass(%s)", (tracking_table(projection),)).fetchone()
    if not exists or exists[0] is None:
        return {}
    rows = conn.execute(
        SQL("SELECT application_name, max(notification_id) FROM {} GROUP BY 1").format(
            Identifier(tracking_table(projection))
        )
    ).fetchall()
    return {name: int(position) for name, position in rows if position is not None}


def events_of(conn: psycopg.Connection[Any], projection: ProjectionClass) -> tuple[int, int]:
    """The last event of its topics stored now, and how many there are."""
    row = conn.execute(
        f"SELECT coalesce(max(notification_id), 0), count(*) FROM {EVENTS_TABLE} "
        f"WHERE {_OF_TOPICS}",
        _topics(projection),
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def reset(
    database_url: str, env: Mapping[str, str], projection: ProjectionClass, view: type[SqlView]
) -> None:
    """Empties the projection: its tables and tracking made anew, in one transaction."""
    factory, recorder = open_view(env, projection, view, CREATE_TABLE="n")
    statements: list[Composable] = list(recorder.sql_create_statements)
    factory.close()
    created = [m.groups() for ddl in view.tables if (m := _CREATED.search(ddl))]
    with psycopg.connect(database_url) as conn, conn.transaction():
        for kind, name in reversed(created):
            drop = "DROP VIEW IF EXISTS {}" if "VIEW" in kind.upper() else "DROP TABLE IF EXISTS {}"
            conn.execute(SQL(drop + " CASCADE").format(Identifier(name)))
        conn.execute(SQL("DROP TABLE IF EXISTS {}").format(Identifier(tracking_table(projection))))
        for statement in statements:
            conn.execute(Composed([statement]))


Progress = Callable[[int, int, float], None]  # done, of, seconds


def rebuild(
    database_url: str,
    env: Mapping[str, str],
    projection: ProjectionClass,
    view: type[SqlView],
    lock_key: int,
    progress: Progress,
    processes: int | None = None,
) -> int:
    """Rebuilds the projection from the first event; returns how many events it applied.

    If no server runs the projection, this process does, with `processes` processes if the
    projection allows it (by default one per core once there are PARALLEL_FROM events).
    """
    with psycopg.connect(
        database_url, autocommit=True, application_name=REBUILDING_COMMAND
    ) as conn:
        conn.execute(REBUILD_REQUESTS_SQL)
        target, count = events_of(conn, projection)
        acquired = conn.execute("SELECT pg_try_advisory_lock(%s)", (lock_key,)).fetchone()
        if acquired and acquired[0]:
            try:
                reset(database_url, env, projection, view)
                report = _Report(progress, count)
                shares = processes_for(projection, count, processes)
                if shares > 1:
                    rebuild_in_shares(
                        database_url, env, projection, view, target, shares, report.add
                    )
                else:
                    _run_here(env, projection, view, target, report)
                report.show()
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (lock_key,))
        else:
            _ask_server(conn, projection, target, count, progress, processes)
    return count


def processes_for(projection: ProjectionClass, count: int, asked: int | None) -> int:
    """How many processes rebuild `count` events of the projection: as asked, else one per
    core from PARALLEL_FROM events; one if the projection must be rebuilt in one."""
    if not count or parallel_rebuild(projection) is None:
        return 1
    if asked is not None:
        return max(asked, 1)
    return (os.cpu_count() or 1) if count >= PARALLEL_FROM else 1


class _Report:
    """Counts the events applied, and shows the progress every PROGRESS_SECONDS."""

    def __init__(self, progress: Progress, count: int) -> None:
        self._progress, self._count = progress, count
        self._started = self._shown = time.monotonic()
        self.done = 0

    def add(self, applied: int) -> None:
        self.done += applied
        if time.monotonic() - self._shown >= PROGRESS_SECONDS:
            self.show()

    def show(self) -> None:
        self._shown = time.monotonic()
        self._progress(self.done, self._count, self._shown - self._started)


def _run_here(
    env: Mapping[str, str],
    projection: ProjectionClass,
    view: type[SqlView],
    target: int,
    report: _Report,
) -> None:
    with BatchRunner(env, projection, view) as runner:
        while applied := runner.step(until=target):
            report.add(applied)


def _ask_server(
    conn: psycopg.Connection[Any],
    projection: ProjectionClass,
    target: int,
    count: int,
    progress: Progress,
    processes: int | None,
) -> None:
    conn.execute(
        "INSERT INTO projection_rebuilds (name, requested_at, processes) "
        "VALUES (%s, now(), %s) ON CONFLICT (name) DO UPDATE "
        "SET requested_at = now(), started_at = NULL, processes = EXCLUDED.processes",
        (projection.name, processes),
    )
    deadline = time.monotonic() + 30
    while True:
        row = conn.execute(
            "SELECT started_at FROM projection_rebuilds WHERE name = %s", (projection.name,)
        ).fetchone()
        if row and row[0] is not None:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"the server running {projection.name} did not start the rebuild within 30 s; "
                "is it still running? (`csms projections` shows it)"
            )
        time.sleep(0.2)
    _follow(conn, projection, target, count, progress)


def _follow(
    conn: psycopg.Connection[Any],
    projection: ProjectionClass,
    target: int,
    count: int,
    progress: Progress,
) -> None:
    started, done, counted = time.monotonic(), 0, 0
    while True:
        position = min(_position(conn, projection), target)
        if position > counted:  # counts only the events applied since the last look
            row = conn.execute(
                f"SELECT count(*) FROM {EVENTS_TABLE} WHERE {_OF_TOPICS} "
                "AND notification_id > %s AND notification_id <= %s",
                (*_topics(projection), counted, position),
            ).fetchone()
            done, counted = done + (int(row[0]) if row else 0), position
        progress(done, count, time.monotonic() - started)
        if position >= target:
            return
        time.sleep(PROGRESS_SECONDS)


def rebuild_requested(conn: psycopg.Connection[Any], projection: ProjectionClass) -> bool:
    """True if someone asked for this projection to be rebuilt and it has not begun."""
    row = conn.execute(
        "SELECT 1 FROM projection_rebuilds WHERE name = %s AND started_at IS NULL",
        (projection.name,),
    ).fetchone()
    return row is not None


def requested_processes(conn: psycopg.Connection[Any], projection: ProjectionClass) -> int | None:
    """How many processes the last request to rebuild the projection asked for, if it said."""
    row = conn.execute(
        "SELECT processes FROM projection_rebuilds WHERE name = %s", (projection.name,)
    ).fetchone()
    return None if row is None else row[0]


def rebuild_started(conn: psycopg.Connection[Any], projection: ProjectionClass) -> None:
    """Tells the one who asked that the projection is empty and replaying."""
    conn.execute(
        "UPDATE projection_rebuilds SET started_at = now() WHERE name = %s", (projection.name,)
    )
