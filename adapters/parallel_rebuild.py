"""A projection rebuilt by several processes, each applying a share of the aggregates' events.

A rebuild is bound by its own process's CPU (decoding events and applying them in Python);
PostgreSQL takes a sixth of that. So on a machine of several cores the events of a projection
that declares `parallel_rebuild` are split by aggregate between as many processes, each with
its own connection, applying its share in the order stored.

Each share records its position under a name of its own (`CSMS#0/2`, `CSMS#1/2`); the
projection's own position is recorded, and the shares' removed, in one transaction once every
share is done. A rebuild interrupted before that leaves the shares' positions behind: the
projection is then empty of any position of its own, and is reset before it runs again
(`projection_admin.unfinished`).

Events of the projection's shared topics are barriers: every share applies what comes before
one, then the first share applies it alone, then every share forgets what it kept and goes on.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping
from multiprocessing.connection import Connection, wait
from typing import Any

import psycopg
from eventsourcing.projection import Projection
from psycopg.sql import SQL, Identifier

from adapters.collection import tune_garbage_collection
from adapters.postgres import EVENTS_TABLE, Share
from adapters.projection_runner import (
    SHARE_TRACKING_NAMES,
    BatchRunner,
    parallel_rebuild,
    tracking_table,
)
from domain.service import CSMS
from projections.base import SqlView

ProjectionClass = type[Projection[Any]]
STOP_CHECK_SECONDS = 0.5
Applied = Callable[[int], None]  # told how many more events were applied


class RebuildFailed(RuntimeError):
    """A share's process failed or died; its error, as that process reported it, is `detail`."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


def rebuild_in_shares(
    database_url: str,
    env: Mapping[str, str],
    projection: ProjectionClass,
    view: type[SqlView],
    target: int,
    processes: int,
    applied: Applied,
    stop: threading.Event | None = None,
) -> None:
    """Applies the projection's events up to `target` to its emptied view, in `processes`
    processes, and records its position at `target`. Setting `stop` abandons it, unfinished."""
    rebuild = parallel_rebuild(projection)
    if rebuild is None:
        raise ValueError(f"projection {projection.name} cannot be rebuilt in parallel")
    with psycopg.connect(database_url, autocommit=True) as conn:
        barriers = _shared_events(conn, rebuild.shared_topics, target)
        with _Shares(env, projection, view, processes, stop or threading.Event()) as shares:
            forget = False
            for end, barrier in _segments(barriers, target):
                shares.run(shares.all, end, forget=forget, applied=applied)
                if barrier is not None:
                    shares.run(shares.all[:1], barrier, forget=False, applied=applied, shared=True)
                forget = barrier is not None
        _finish(conn, projection, target)


def _shared_events(
    conn: psycopg.Connection[Any], topics: tuple[str, ...], target: int
) -> list[int]:
    if not topics:
        return []
    rows = conn.execute(
        f"SELECT notification_id FROM {EVENTS_TABLE} "
        "WHERE topic = ANY(%s) AND notification_id <= %s ORDER BY notification_id",
        (list(topics), target),
    ).fetchall()
    return [row[0] for row in rows]


def _segments(barriers: list[int], target: int) -> Iterator[tuple[int, int | None]]:
    """(end, barrier): apply every share up to `end`, then the barrier event, if any."""
    for barrier in barriers:
        yield barrier - 1, barrier
    yield target, None


def _finish(conn: psycopg.Connection[Any], projection: ProjectionClass, target: int) -> None:
    table = Identifier(tracking_table(projection))
    with conn.transaction():
        conn.execute(
            SQL("DELETE FROM {} WHERE application_name LIKE %s").format(table),
            (SHARE_TRACKING_NAMES,),
        )
        conn.execute(
            SQL("INSERT INTO {} (application_name, notification_id) VALUES (%s, %s)").format(table),
            (CSMS.name, target),
        )


class _Shares:
    """The processes of a rebuild, one per share, told what to apply through pipes."""

    def __init__(
        self,
        env: Mapping[str, str],
        projection: ProjectionClass,
        view: type[SqlView],
        count: int,
        stop: threading.Event,
    ) -> None:
        self._stop = stop
        context = multiprocessing.get_context("spawn")  # no copy of this process's threads
        self.all: list[tuple[Any, Connection]] = []
        for number in range(count):
            ours, theirs = context.Pipe()
            process = context.Process(
                target=_work,
                args=(dict(env), projection, view, Share(number, count), theirs),
                name=f"rebuild-{projection.name}-{number}",
                daemon=True,
            )
            process.start()
            theirs.close()
            self.all.append((process, ours))

    def run(
        self,
        shares: list[tuple[Any, Connection]],
        until: int,
        forget: bool,
        applied: Applied,
        shared: bool = False,
    ) -> None:
        """Has each of the shares apply its events up to `until`; returns when all are done."""
        for _, pipe in shares:
            pipe.send(("run", until, shared, forget))
        waiting = {pipe: process for process, pipe in shares}
        while waiting:
            if self._stop.is_set():
                raise RebuildFailed("stopped before it was done")
            for ready in wait(list(waiting), timeout=STOP_CHECK_SECONDS):
                assert isinstance(ready, Connection)
                try:
                    kind, value = ready.recv()
                except EOFError:
                    process = waiting[ready]
                    raise RebuildFailed(
                        f"{process.name} exited with code {process.exitcode}"
                    ) from None
                if kind == "applied":
                    applied(value)
                elif kind == "done":
                    del waiting[ready]
                else:
                    cause = value.strip().splitlines()[-1]
                    raise RebuildFailed(f"{waiting[ready].name} failed: {cause}", value)

    def __enter__(self) -> _Shares:
        return self

    def __exit__(self, *exc: object) -> None:
        for _, pipe in self.all:
            with contextlib.suppress(OSError):  # it is gone already
                pipe.send(("stop", 0, False, False))
            pipe.close()
        for process, _ in self.all:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()


def _work(
    env: dict[str, str],
    projection: ProjectionClass,
    view: type[SqlView],
    share: Share,
    pipe: Connection,
) -> None:
    """A share's process: applies its events as far as it is told, reporting as it goes."""
    tune_garbage_collection()
    try:
        with BatchRunner(env, projection, view, share=share) as runner:
            while True:
                kind, until, shared, forget = pipe.recv()
                if kind == "stop":
                    return
                if forget:
                    runner.forget()
                while applied := runner.step(until=until, with_shared=shared):
                    pipe.send(("applied", applied))
                pipe.send(("done", 0))
    except Exception:
        pipe.send(("failed", traceback.format_exc()))
