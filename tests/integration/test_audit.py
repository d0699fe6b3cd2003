"""Auditors prove the history unaltered: `csms audit verify` passes on an untouched store and
names the first event a superuser changed, removed or inserted behind the store's back."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from tests.stations import connect
from tests.support import ServerProcess, eventually, graphql, projection_tables


@pytest.fixture
def history(shared_server: ServerProcess) -> ServerProcess:
    """The module's one server (and database), under the name these tests give it."""
    return shared_server


async def scripted(server: ServerProcess) -> None:
    for protocol in ("ocpp1.6", "ocpp2.0.1"):
        async with connect(server, f"CS-AUDIT-{protocol}", protocol) as station:
            await station.boot("Acme", "One", "S-1", "1.0")
            await station.status(1, 1, "Available", "2026-11-25T09:00:00Z")
            tx = await station.start(1, "TAG-A", 0, "2026-11-25T09:01:00Z")
            await station.meter(tx, 1, "2026-11-25T09:10:00Z", "900", "Wh")
            await station.stop(tx, 1, 1800, "2026-11-25T09:20:00Z", "Local", None)


def verify(server: ServerProcess) -> tuple[int, str]:
    done = server.cli("audit", "verify")
    return done.returncode, done.stdout


class Superuser:
    """Someone with every right on the database, bypassing its triggers."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.conn.execute("SET session_replication_role = replica")

    def row(self, notification_id: int) -> dict[str, Any]:
        cursor = self.conn.execute(
            "SELECT * FROM csms_events WHERE notification_id = %s", (notification_id,)
        )
        names = [column.name for column in cursor.description or ()]
        found = cursor.fetchone()
        assert found is not None
        return dict(zip(names, found, strict=True))

    def put(self, row: dict[str, Any]) -> None:
        names = ", ".join(row)
        marks = ", ".join(["%s"] * len(row))
        self.conn.execute(f"INSERT INTO csms_events ({names}) VALUES ({marks})", list(row.values()))

    def execute(self, sql: str, *params: Any) -> None:
        self.conn.execute(sql, params)

    def next_version(self, row: dict[str, Any]) -> int:
        found = self.conn.execute(
            "SELECT max(originator_version) FROM csms_events WHERE originator_id = %s",
            (row["originator_id"],),
        ).fetchone()
        assert found is not None
        return int(found[0]) + 1


async def test_verify_names_what_was_changed_removed_or_inserted(
    start_server: Callable[..., ServerProcess], database_url: str
) -> None:
    # A store of its own: the tampering below would mislead the other tests' projections.
    history = start_server(database_url)
    await scripted(history)
    code, said = verify(history)
    assert code == 0 and said.startswith("intact: "), said
    checked = int(said.split()[1])
    assert checked > 20

    assert history.database_url
    superuser = Superuser(history.database_url)
    middle = checked // 2
    original = superuser.row(middle)

    superuser.execute(
        "UPDATE csms_events SET state = replace(state::text, 'Accepted', 'Rejected')::bytea "
        "WHERE notification_id = %s",
        middle,
    )
    superuser.execute(  # a change that leaves the bytes alone does not count: make sure
        "UPDATE csms_events SET state = state || ' '::bytea WHERE notification_id = %s", middle
    )
    code, said = verify(history)
    assert code == 1 and f"event {middle} (" in said and "changed after writing" in said, said

    superuser.execute("DELETE FROM csms_events WHERE notification_id = %s", middle)
    superuser.put(original)
    assert verify(history)[0] == 0  # put back exactly as it was: intact again

    superuser.execute("DELETE FROM csms_events WHERE notification_id = %s", middle)
    code, said = verify(history)
    assert code == 1 and "removed" in said, said
    assert f"event {middle + 1} (" in said or f"v{original['originator_version'] + 1}" in said
    superuser.put(original)

    last = superuser.row(checked)
    forged = {**last, "aggregate_hash": None, "chain_hash": None}
    forged["notification_id"] = checked + 1000
    forged["originator_version"] = superuser.next_version(last)
    superuser.put(forged)
    code, said = verify(history)
    assert code == 1 and f"event {checked + 1000} (" in said and "inserted" in said, said
    superuser.execute("DELETE FROM csms_events WHERE notification_id = %s", checked + 1000)

    stolen = {**superuser.row(middle), "notification_id": checked + 2000}
    stolen["originator_version"] = superuser.next_version(stolen)
    superuser.put(stolen)  # a copy with another event's hashes, put at the end
    code, said = verify(history)
    assert code == 1 and f"event {checked + 2000} (" in said, said
    superuser.execute("DELETE FROM csms_events WHERE notification_id = %s", checked + 2000)
    assert verify(history)[0] == 0


HISTORY = """query($station: String, $tx: String, $types: [String!], $after: String,
                   $since: DateTime, $until: DateTime, $first: Int!) {
    history(stationId: $station, transactionId: $tx, types: $types, after: $after,
            since: $since, until: $until, first: $first) {
        events { cursor aggregateType type version recordedAt stationId transactionId data }
        endCursor hasMore
    }
}"""
STATION_AT = """query($id: String!, $at: DateTime!) {
    stationAt(id: $id, at: $at) {
        id version connected protocol vendor connectors { connectorId status } }
}"""
TRANSACTION_AT = """query($station: String!, $tx: String!, $at: DateTime!) {
    transactionAt(stationId: $station, transactionId: $tx, at: $at) {
        version startedAt stoppedAt stopReason energyWh active }
}"""


def now() -> str:
    return datetime.now(UTC).isoformat()


async def instant() -> str:
    """A moment between two steps: after what came before was recorded, before what follows."""
    await asyncio.sleep(0.05)
    moment = now()
    await asyncio.sleep(0.05)
    return moment


async def caught_up(server: ServerProcess) -> None:
    def behind() -> str:
        return server.cli("projections").stdout

    await eventually(
        lambda: asyncio.to_thread(behind),
        lambda text: all(line.split()[2] == "0" for line in text.splitlines()[1:]),
    )


async def read_all(server: ServerProcess, **filters: Any) -> list[Any]:
    events, after = [], None
    while True:
        page = (await graphql(server, HISTORY, "auditor", after=after, first=4, **filters))[
            "history"
        ]
        events += page["events"]
        if not page["hasMore"]:
            return events
        after = page["endCursor"]


async def test_history_time_travel_and_frames_tell_what_happened(history: ServerProcess) -> None:
    server, station_id = history, "CS-TRAVEL"
    unknown = await instant()
    async with connect(server, station_id, "ocpp1.6") as station:
        await station.boot("Acme", "Two", "S-2", "2.0")
        await station.status(1, 1, "Available", "2026-11-25T10:00:00Z")
        available = await instant()
        tx = await station.start(1, "TAG-T", 1000, "2026-11-25T10:01:00Z")
        await station.meter(tx, 1, "2026-11-25T10:10:00Z", "1500", "Wh")
        charging = await instant()
        await station.stop(tx, 1, 2500, "2026-11-25T10:20:00Z", "EVDisconnected", None)
        stopped = await instant()
    gone = await instant()
    await caught_up(server)

    async def station_at(moment: str) -> Any:
        return (await graphql(server, STATION_AT, "auditor", id=station_id, at=moment))["stationAt"]

    assert await station_at(unknown) is None
    then = await station_at(available)
    assert (then["connected"], then["protocol"], then["vendor"]) == (True, "ocpp1.6", "Acme")
    assert {c["connectorId"]: c["status"] for c in then["connectors"]} == {1: "Available"}
    assert (await station_at(gone))["connected"] is False
    assert (await station_at(gone))["version"] > then["version"]

    async def transaction_at(moment: str) -> Any:
        data = await graphql(
            server, TRANSACTION_AT, "auditor", station=station_id, tx=tx, at=moment
        )
        return data["transactionAt"]

    assert await transaction_at(available) is None
    running = await transaction_at(charging)
    assert (running["active"], running["energyWh"], running["stoppedAt"]) == (True, "500", None)
    ended = await transaction_at(stopped)
    assert (ended["active"], ended["energyWh"], ended["stopReason"]) == (
        False,
        "1500",
        "EVDisconnected",
    )

    everything = await read_all(server, station=station_id)
    cursors = [int(e["cursor"]) for e in everything]
    assert cursors == sorted(set(cursors))
    kinds = [(e["aggregateType"], e["type"]) for e in everything]
    for expected in [("ChargingStation", "Registered"), ("ChargingStation", "Booted"),
                     ("Transaction", "Started"), ("Transaction", "Stopped"),
                     ("ChargingStation", "Disconnected")]:  # fmt: skip
        assert expected in kinds
    assert kinds.index(("Transaction", "Started")) < kinds.index(("Transaction", "Stopped"))
    of_transaction = await read_all(server, station=station_id, tx=tx)
    assert {e["aggregateType"] for e in of_transaction} == {"Transaction"}
    assert all(e["transactionId"] == tx for e in of_transaction)
    statuses = await read_all(server, station=station_id, types=["ConnectorStatusChanged"])
    assert [e["data"]["status"] for e in statuses] == ["Available"]
    window = await read_all(server, station=station_id, since=available, until=stopped)
    assert {e["type"] for e in window} >= {"Started", "MeterValuesAdded", "Stopped"}
    assert "Booted" not in {e["type"] for e in window}

    frames = await eventually(
        lambda: graphql(
            server,
            "query($id: String!) { frames(stationId: $id, first: 100) { frames { direction "
            "messageId action frame } hasMore } }",
            "auditor",
            id=station_id,
        ),
        lambda data: len(data["frames"]["frames"]) >= 10,
    )
    passed = frames["frames"]["frames"]
    calls = ["BootNotification", "StatusNotification", "StartTransaction", "MeterValues",
             "StopTransaction"]  # fmt: skip
    assert [(f["direction"], f["action"]) for f in passed] == [
        (direction, action) for action in calls for direction in ("in", "out")
    ]
    boot_in = next(f for f in passed if f["action"] == "BootNotification")
    assert boot_in["direction"] == "in" and '"chargePointVendor":"Acme"' in boot_in["frame"]
    boot_out = next(f for f in passed if f["direction"] == "out"
                    and f["messageId"] == boot_in["messageId"])  # fmt: skip
    assert boot_out["frame"].startswith("[3,") and '"status":"Accepted"' in boot_out["frame"]
    assert {f["direction"] for f in passed} == {"in", "out"}


async def test_replay_until_an_instant_equals_the_projections_captured_then(
    history: ServerProcess,
) -> None:
    server = history
    assert server.database_url
    async with connect(server, "CS-REPLAY", "ocpp2.0.1") as station:
        await station.boot("Acme", "Three", "S-3", "3.0")
        tx = await station.start(1, "TAG-P", 0, "2026-11-25T11:00:00Z")
        await station.stop(tx, 1, 700, "2026-11-25T11:05:00Z", "Local", None)
    await caught_up(server)
    captured = projection_tables(server.database_url)
    moment = await instant()
    async with connect(server, "CS-REPLAY", "ocpp2.0.1") as station:  # what came after
        await station.status(1, 1, "Faulted", "2026-11-25T11:10:00Z")
        tx = await station.start(1, "TAG-Q", 700, "2026-11-25T11:11:00Z")
    await caught_up(server)
    assert projection_tables(server.database_url) != captured

    done = await asyncio.to_thread(
        server.cli, "audit", "replay", "--until", moment, "--schema", "audit_then"
    )
    assert done.returncode == 0, done.stderr
    assert "schema audit_then" in done.stdout and "events" in done.stderr
    assert projection_tables(server.database_url, "audit_then") == captured


async def test_the_frame_journal_keeps_frames_for_the_retention_period(
    start_server: Callable[..., ServerProcess], database_url: str
) -> None:
    server = start_server(database_url, "--frame-retention-days", "2")
    async with connect(server, "CS-KEPT", "ocpp1.6") as station:
        await station.heartbeat()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO ocpp_frames (station_id, direction, at, message_id, action, frame) "
            "VALUES ('CS-OLD', 'in', now() - interval '3 days', '1', 'Heartbeat', %s)",
            ('[2,"1","Heartbeat",{}]',),
        )
    server.stop()
    start_server(database_url, "--frame-retention-days", "2")  # prunes as it starts

    def journal() -> list[str]:
        with psycopg.connect(database_url) as conn:
            return [r[0] for r in conn.execute("SELECT DISTINCT station_id FROM ocpp_frames")]

    kept = await eventually(lambda: asyncio.to_thread(journal), lambda ids: "CS-OLD" not in ids)
    assert kept == ["CS-KEPT"]
