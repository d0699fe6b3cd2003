"""Several worker processes share the ports and the database, and replace one that dies."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import platform
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from ocpp.v16 import call

from adapters import station_credentials
from adapters.postgres import SCHEMA_LOCK_KEY
from tests.support import ServerProcess, eventually, graphql, station16

STATIONS = "{ stations { id connected } }"
TRANSACTIONS = "{ transactions(first: 1000) { stationId transactionId active energyWh } }"


def _running_on(log: str) -> dict[str, int]:
    """Each projection's process, as the last line about it says."""
    found = re.findall(r"projection (\w+) runs on this node \(process (\d+)\)", log)
    return {name: int(pid) for name, pid in found}


def _nodes(database_url: str) -> set[str]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT DISTINCT node FROM station_status WHERE connected").fetchall()
    return {row[0] for row in rows}


async def _charge(server: ServerProcess, station_id: str) -> None:
    async with station16(server, station_id) as cp:
        await cp.call(call.BootNotification(charge_point_vendor="V", charge_point_model="M"))
        started = await cp.call(
            call.StartTransaction(
                connector_id=1, id_tag="T", meter_start=100, timestamp="2026-11-25T06:00:00Z"
            )
        )
        await cp.call(
            call.StopTransaction(
                transaction_id=started.transaction_id,
                meter_stop=1100,
                timestamp="2026-11-25T06:30:00Z",
            )
        )


def _started(log: str, name: str) -> list[int]:
    """The pids the supervisor started processes of that name with, in order."""
    return [int(pid) for pid in re.findall(rf"{name} started \(pid (\d+)\)", log)]


async def test_workers_share_the_stations_and_one_that_dies_is_replaced(
    start_server: Callable[..., ServerProcess], database_url: str
) -> None:
    server = start_server(database_url, "--workers", "2")
    # The API answers once one worker is up; the kernel spreads stations over those listening.
    await eventually(lambda: asyncio.to_thread(server.log), lambda log: log.count("ready") == 2)
    async with contextlib.AsyncExitStack() as stack:
        # Held open: each connection stays with the worker the kernel gave it to.
        held = [await stack.enter_async_context(station16(server, f"CP-W{i}")) for i in range(16)]
        boot = call.BootNotification(charge_point_vendor="V", charge_point_model="M")
        answers = await asyncio.gather(*(cp.call(boot) for cp in held))
        assert {answer.status for answer in answers} == {"Accepted"}
        nodes = await eventually(
            lambda: asyncio.to_thread(_nodes, database_url), lambda n: len(n) == 2
        )
    pids = {int(node.rsplit(":", 1)[1]) for node in nodes}
    assert server.process is not None and server.process.pid not in pids
    # The views are fed by a process of their own, beside the two that hold stations.
    log = server.log()
    (feeder,) = _started(log, "projections")
    assert set(_started(log, r"worker \d")) == pids and feeder not in pids
    await eventually(
        lambda: asyncio.to_thread(server.log),
        lambda log: set(_running_on(log).values()) == {feeder},
    )
    await asyncio.gather(*(_charge(server, f"CP-TX{i}") for i in range(6)))
    data = await eventually(
        lambda: graphql(server, TRANSACTIONS), lambda d: len(d["transactions"]) == 6
    )
    assert {(t["active"], t["energyWh"]) for t in data["transactions"]} == {(False, "1000")}

    os.kill(pids.pop(), signal.SIGKILL)
    log = await eventually(
        lambda: asyncio.to_thread(server.log),
        lambda log: len(_started(log, r"worker \d")) == 3,
        within=15,
    )
    assert re.search(r"worker \d \(pid \d+\) exited with code -9; starting another in \d+ s", log)
    await asyncio.gather(*(_charge(server, f"CP-AFTER{i}") for i in range(6)))  # served still

    # The views' process too is replaced, and its replacement goes on where it stopped.
    os.kill(feeder, signal.SIGKILL)
    log = await eventually(
        lambda: asyncio.to_thread(server.log),
        lambda log: len(_started(log, "projections")) == 2,
        within=15,
    )
    replacement = _started(log, "projections")[-1]
    await eventually(
        lambda: asyncio.to_thread(server.log),
        lambda log: set(_running_on(log).values()) == {replacement},
        within=15,
    )
    data = await eventually(
        lambda: graphql(server, TRANSACTIONS), lambda d: len(d["transactions"]) == 12, within=30
    )
    assert {(t["active"], t["energyWh"]) for t in data["transactions"]} == {(False, "1000")}
    assert server.stop() == 0


async def test_a_second_server_on_the_same_ports_is_refused(
    start_server: Callable[..., ServerProcess], database_url: str
) -> None:
    first = start_server(database_url, "--workers", "2")
    ports = ["--host", "127.0.0.1", "--ocpp-port", str(first.ocpp_port)]
    second = first.cli("serve", *ports, "--http-port", str(first.http_port), "--workers", "2")
    assert second.returncode == 1
    assert f"port {first.ocpp_port} on 127.0.0.1 is in use" in second.stderr
    boot = call.BootNotification(charge_point_vendor="V", charge_point_model="M")
    async with station16(first, "CP-FIRST") as cp:  # the first one serves on
        answer = await cp.call(boot)
    assert answer.status == "Accepted"


async def test_the_memory_store_answers_and_stores_nothing(
    start_server: Callable[..., ServerProcess], database_url: str
) -> None:
    server = start_server(database_url, "--store", "memory")
    await _charge(server, "CP-MEM")
    assert "events are kept in memory only" in server.log()
    with psycopg.connect(database_url) as conn:
        table = conn.execute("SELECT to_regclass('csms_events')").fetchone()
        assert table is not None
        stored = conn.execute("SELECT count(*) FROM csms_events").fetchone() if table[0] else (0,)
    assert stored == (0,)
    data = await graphql(server, STATIONS)
    assert data["stations"] == []  # no view is fed


async def test_a_node_may_leave_the_views_to_another(
    start_server: Callable[..., ServerProcess], database_url: str
) -> None:
    gateway = start_server(database_url, "--projections", "elsewhere")
    await _charge(gateway, "CP-GATEWAY")
    assert "views: fed by other nodes on this database" in gateway.log()
    assert _running_on(gateway.log()) == {}
    with psycopg.connect(database_url) as conn:
        stored = conn.execute("SELECT count(*) FROM csms_events").fetchone()
    assert stored is not None and stored[0] > 0  # stored, and answered, without a view
    assert (await graphql(gateway, STATIONS))["stations"] == []

    views = start_server(database_url)  # the node that feeds them
    shown = await eventually(
        lambda: graphql(gateway, TRANSACTIONS),
        lambda data: len(data["transactions"]) == 1,
    )
    assert shown["transactions"] == [
        {"stationId": "CP-GATEWAY", "transactionId": "1", "active": False, "energyWh": "1000"}
    ]
    assert set(_running_on(views.log()).values()) == {views.process.pid}  # type: ignore[union-attr]


async def test_a_server_whose_database_is_gone_stops_within_its_stop_timeout(
    start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    bounded = ("--workers", "2", "--stop-timeout", "3")
    server = start_server(None, "--data-dir", str(data_dir), *bounded)
    boot = call.BootNotification(charge_point_vendor="V", charge_point_model="M")
    async with station16(server, "CP-STOP") as cp:
        assert (await cp.call(boot)).status == "Accepted"
        postmaster = int((data_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
        os.kill(postmaster, signal.SIGQUIT)  # PostgreSQL's immediate shutdown
        # The station's disconnect can no longer be committed: without a bound, the stop waits
        # for the store's retries, longer than stop() waits.
        assert await asyncio.to_thread(server.stop) == 1
    assert "could not stop cleanly within 3 s (--stop-timeout)" in server.log()


# The sessions a server's start blocks in: on the schema's lock, or on the credentials' table.
WAITING_FOR_THE_SCHEMA = "wait_event = 'advisory'"
READING_CREDENTIALS = "wait_event_type = 'Lock' AND query LIKE 'SELECT station_id, password_salt%%'"


def _sessions_waiting(database_url: str, condition: str) -> int:
    """The sessions of this database that meet `condition` (on `pg_stat_activity`)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            f" WHERE {condition} AND datname = current_database()"
        ).fetchone()
    return int(row[0]) if row else 0


async def _stops_at_once(server: ServerProcess) -> None:
    started = time.monotonic()
    assert await asyncio.to_thread(server.stop) == 0
    assert time.monotonic() - started < 10  # not the stop timeout (20 s), nor a kill


@pytest.mark.parametrize("workers", [1, 2])
async def test_a_server_stopped_while_starting_stops_at_once(
    start_server: Callable[..., ServerProcess], database_url: str, workers: int
) -> None:
    """Its processes are still waiting for the database (here, for the schema's lock): none
    has anything to stop yet, so none holds the stop, and each stops cleanly."""
    with psycopg.connect(database_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK_KEY,))
        server = start_server(database_url, "--workers", str(workers), ready=False)
        # Each worker, and the views' process beside several, blocked in its start.
        blocked = workers if workers == 1 else workers + 1
        await eventually(
            lambda: asyncio.to_thread(_sessions_waiting, database_url, WAITING_FOR_THE_SCHEMA),
            lambda waiting: waiting == blocked,
        )
        await _stops_at_once(server)
    # Ctrl-C reaches a single process itself, and the processes of several as the SIGTERM of
    # their supervisor.
    assert server.log().count("stopped while starting (SIG") == blocked


@pytest.mark.parametrize("workers", [1, 2])
async def test_a_server_stopped_while_its_event_loop_starts_stops_cleanly(
    start_server: Callable[..., ServerProcess], database_url: str, workers: int
) -> None:
    """Past its blocking part, a worker's start awaits the database too (here, the station
    credentials it reads before it lets stations in): a stop then ends the start and stops what
    it started, in each worker."""
    with psycopg.connect(database_url) as holder:
        holder.execute(station_credentials.TABLE_SQL)
        holder.commit()
        holder.execute("LOCK TABLE station_credentials IN ACCESS EXCLUSIVE MODE")
        server = start_server(database_url, "--workers", str(workers), ready=False)
        await eventually(
            lambda: asyncio.to_thread(_sessions_waiting, database_url, READING_CREDENTIALS),
            lambda waiting: waiting == workers,
        )
        if workers > 1:  # the views' process reads no credentials: it starts to the end
            await eventually(
                lambda: asyncio.to_thread(server.log), lambda log: "projections running" in log
            )
        await _stops_at_once(server)
    log = server.log()
    assert log.count("stopped while starting (SIG") == workers
    assert "Traceback" not in log


# Linux's tgkill(2), which signals one thread of a process, by machine.
_TGKILL = {"x86_64": 234, "aarch64": 131}


def _signal_thread(pid: int, thread: int, signum: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(_TGKILL[platform.machine()], pid, thread, signum) != 0:
        raise OSError(ctypes.get_errno(), f"tgkill({pid}, {thread}) failed")


async def test_the_views_process_stops_on_a_signal_that_reached_another_of_its_threads(
    start_server: Callable[..., ServerProcess], database_url: str
) -> None:
    """The kernel may hand a process's SIGTERM to any of its threads; Python runs the handler in
    the main thread only, which must wake for it."""
    server = start_server(database_url, "--workers", "2")
    log = await eventually(
        lambda: asyncio.to_thread(server.log), lambda text: "projections running" in text
    )
    found = re.search(r"projections started \(pid (\d+)\)", log)
    assert found, log
    views = int(found[1])
    others = [int(t) for t in os.listdir(f"/proc/{views}/task") if int(t) != views]
    assert others, "the views' process runs its projections in threads"
    _signal_thread(views, others[0], signal.SIGTERM)
    await eventually(
        lambda: asyncio.to_thread(server.log),
        lambda text: "projections stopped" in text,
        within=5,
    )


def _connected_as(database_url: str) -> set[str]:
    with psycopg.connect(database_url, autocommit=True, application_name="test") as conn:
        rows = conn.execute(
            "SELECT DISTINCT application_name FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return {str(row[0]) for row in rows}


async def test_each_process_names_its_database_connections(
    start_server: Callable[..., ServerProcess], database_url: str
) -> None:
    """An operator looking at the database's sessions sees which process each belongs to."""
    start_server(database_url, "--workers", "2")
    expected = {"csms worker 0", "csms worker 1", "csms projections"}
    named = await eventually(
        lambda: asyncio.to_thread(_connected_as, database_url), lambda names: expected <= names
    )
    assert named == expected, named  # nothing unnamed
