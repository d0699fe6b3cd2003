"""Runs the projections, each on exactly one node of those sharing a database.

A node runs a projection while it holds that projection's advisory lock; if the node dies, the
lock goes with its connection and another node takes over where the tracking position says.

A server of several workers runs its projections in a process of their own, beside the workers
that hold the stations: in a worker, a projection's thread would share the interpreter (the GIL)
with the event loop, whose answers then wait for it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from eventsourcing.projection import Projection

from adapters import metrics
from adapters import projection_admin as admin
from adapters.parallel_rebuild import RebuildFailed, rebuild_in_shares
from adapters.postgres import EVENTS_TABLE
from adapters.projection_runner import BatchRunner
from projections.base import SqlView

log = logging.getLogger(__name__)

ProjectionClass = type[Projection[Any]]
RETRY_SECONDS = 2.0  # after an error
# How often a node looks for a projection it does not run: one whose node died is taken over
# within this.
POLL_SECONDS = 1.0
# A caught-up projection waits for the store's notification of a commit, or this long at most.
IDLE_SECONDS = 0.5
# A projection that keeps up steps at most once in this long, so that the events of many commits
# make one batch: each step reads the store twice, copies each table's rows and commits once,
# however few events it brings (often none). Stepping at every commit cost the server 0.3 of a
# core, and PostgreSQL 0.13, at 1,900 msg/s; stepping every 0.1 s instead of every 0.25 s cost
# the views' process 0.07 of a core, and PostgreSQL 0.03, at 2,400 (README, Performance, item
# 29). The read side trails by up to this much more, a quarter of the 1 s it is allowed.
GATHER_SECONDS = 0.25


def lock_key(projection: ProjectionClass) -> int:
    return zlib.crc32(f"csms-projection:{projection.name}".encode())


class ProjectionHost:
    def __init__(
        self,
        database_url: str,
        env: Mapping[str, str],
        projections: Sequence[tuple[ProjectionClass, type[SqlView]]],
    ) -> None:
        self._database_url = database_url
        # The runners' application reads events only: its tables exist already.
        self._env = {**env, "CSMS_CREATE_TABLE": "n", "POSTGRES_POOL_SIZE": "1"}
        self._projections = projections
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for projection, view in self._projections:
            thread = threading.Thread(
                target=self._host,
                args=(projection, view),
                name=f"projection-{projection.name}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stopping.set()
        if self._threads:
            self._wake_projections()
        for thread in self._threads:
            thread.join(timeout=10)

    def _wake_projections(self) -> None:
        """Wakes those waiting for a commit (other nodes' too: they find nothing new)."""
        with (
            contextlib.suppress(psycopg.Error),
            psycopg.connect(self._database_url, autocommit=True, connect_timeout=2) as conn,
        ):
            conn.execute(f"NOTIFY {EVENTS_TABLE}")

    def _host(self, projection: ProjectionClass, view: type[SqlView]) -> None:
        while not self._stopping.is_set():
            try:
                # One connection per projection for its lock, kept between attempts.
                with psycopg.connect(self._database_url, autocommit=True) as conn:
                    while not self._stopping.is_set():
                        self._lead(conn, projection, view)
                        self._stopping.wait(POLL_SECONDS)
            except Exception:
                log.exception(
                    "projection %s stopped; restarting in %.0fs", projection.name, RETRY_SECONDS
                )
                self._stopping.wait(RETRY_SECONDS)

    def _lead(
        self,
        conn: psycopg.Connection[Any],
        projection: ProjectionClass,
        view: type[SqlView],
    ) -> None:
        """Runs the projection while this node holds its lock; returns if another has it."""
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (lock_key(projection),))
        acquired = row.fetchone()
        if not acquired or not acquired[0]:
            return  # another node runs it; try again later
        try:
            log.info("projection %s runs on this node (process %d)", projection.name, os.getpid())
            if admin.unfinished(conn, projection):
                log.warning(
                    "projection %s: a parallel rebuild stopped before it was done; "
                    "rebuilding it from the first event",
                    projection.name,
                )
                admin.reset(self._database_url, self._env, projection, view)
            while not self._stopping.is_set():
                if admin.rebuild_requested(conn, projection):
                    log.info("projection %s: rebuilding from the first event", projection.name)
                    admin.reset(self._database_url, self._env, projection, view)
                    admin.rebuild_started(conn, projection)
                    if not self._rebuild_in_shares(conn, projection, view):
                        return  # the node is stopping
                self._run(conn, projection, view)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (lock_key(projection),))

    def _rebuild_in_shares(
        self, conn: psycopg.Connection[Any], projection: ProjectionClass, view: type[SqlView]
    ) -> bool:
        """Applies the events stored so far in several processes, if the projection allows it
        and the request (or else the number of events) says so; the runner goes on from there.
        False if the node stopped meanwhile."""
        target, count = admin.events_of(conn, projection)
        asked = admin.requested_processes(conn, projection)
        processes = admin.processes_for(projection, count, asked)
        if processes < 2:
            return True
        log.info(
            "projection %s: rebuilding %d events in %d processes",
            projection.name,
            count,
            processes,
        )
        try:
            rebuild_in_shares(
                self._database_url, self._env, projection, view, target, processes,
                lambda applied: None, self._stopping,
            )  # fmt: skip
        except RebuildFailed:
            if self._stopping.is_set():
                return False  # left unfinished: rebuilt again when the projection next runs
            raise
        return True

    def _run(
        self,
        lock_conn: psycopg.Connection[Any],
        projection: ProjectionClass,
        view: type[SqlView],
    ) -> None:
        """Runs the projection until the node stops or someone asks for a rebuild."""
        lock_conn.execute(f"LISTEN {EVENTS_TABLE}")  # the store notifies each commit
        position = metrics.PROJECTION_POSITION.labels(projection.name)
        behind = metrics.PROJECTION_BEHIND.labels(projection.name)
        try:
            with BatchRunner(self._env, projection, view) as runner:
                checked = time.monotonic()
                while not self._stopping.is_set():
                    began = time.monotonic()
                    applied = runner.step()
                    position.set(runner.position)
                    behind.set(runner.behind)
                    self._stopping.wait(pause_after_step(began, applied, runner.batch))
                    if not applied:
                        _wait_for_events(lock_conn)
                    if time.monotonic() - checked >= 1.0:
                        checked = time.monotonic()
                        _drain(lock_conn)  # what came in while busy
                        # This query also fails if the lock's connection is gone.
                        if admin.rebuild_requested(lock_conn, projection):
                            return
        finally:
            position.set(0)  # another process's figures, if it runs the projection now
            behind.set(0)
            lock_conn.execute(f"UNLISTEN {EVENTS_TABLE}")
            _drain(lock_conn)


def pause_after_step(began: float, applied: int, batch: int) -> float:
    """Seconds to wait before a projection's next step: none after a full batch (it is behind),
    else what is left of GATHER_SECONDS since the step `began` (a time.monotonic())."""
    if applied >= batch:
        return 0.0
    return max(0.0, began + GATHER_SECONDS - time.monotonic())


def _wait_for_events(conn: psycopg.Connection[Any]) -> None:
    """Returns when the store notifies a commit, or after IDLE_SECONDS at most."""
    for _ in conn.notifies(timeout=IDLE_SECONDS, stop_after=1):
        break
    _drain(conn)


def _drain(conn: psycopg.Connection[Any]) -> None:
    """Forgets the notifications received: one step reads every event they announce."""
    for _ in conn.notifies(timeout=0):
        pass
