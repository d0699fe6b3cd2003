"""A station's whole session, seen by an operator through GraphQL: for 1.6, 2.0.1 and 2.1."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.stations import VERSIONS, Station, connect
from tests.support import ServerProcess, eventually, graphql

STATION_QUERY = """query($id: String!) {
  station(id: $id) {
    id vendor model serialNumber firmwareVersion registrationStatus connected protocol
    firmwareStatus logUploadStatus
    connectors { evseId connectorId status availability }
    evses { id connectors { connectorId } }
  }
  transactions(stationId: $id) {
    transactionId evseId connectorId idToken meterStartWh meterStopWh energyWh stopReason active
  }
}"""


async def run_session(station: Station) -> str:
    assert await station.boot("Acme", "Wallbox 22", "SN-42", "1.2.3") == "Accepted"
    for evse, connector in station.station_connectors:
        await station.status(evse, connector, "Available", "2026-11-24T09:59:00Z")
    assert await station.authorize("CARD-1") == "Accepted"
    tx = await station.start(1, "CARD-1", 12_000, "2026-11-24T10:00:00Z")
    await station.status(1, 1, "Occupied", "2026-11-24T10:00:01Z")
    await station.meter(tx, 1, "2026-11-24T10:15:00Z", "14.5", "kWh")
    assert (await station.heartbeat()).endswith("Z")
    await station.firmware_status("Downloading")
    await station.log_status("Idle", 7)
    assert await station.data_transfer("com.acme", "x", "y") == "UnknownVendorId"
    await station.security_event("SettingSystemTime", "NTP", "2026-11-24T10:16:00Z")
    await station.stop(tx, 1, 17_250, "2026-11-24T10:30:00Z", "EVDisconnected", "CARD-1")
    return tx


def check_operator_view(data: dict[str, Any], protocol: str, tx: str, reported: Any) -> None:
    station = data["station"]
    assert station["vendor"] == "Acme" and station["model"] == "Wallbox 22"
    assert station["serialNumber"] == "SN-42" and station["firmwareVersion"] == "1.2.3"
    assert station["registrationStatus"] == "Accepted" and station["protocol"] == protocol
    assert station["firmwareStatus"] == "Downloading" and station["logUploadStatus"] == "Idle"
    availability = {
        (c["evseId"], c["connectorId"]): c["availability"] for c in station["connectors"]
    }
    assert availability == {
        where: "Occupied" if where == (1, 1) else "Available" for where in reported
    }
    assert [e["id"] for e in station["evses"]] == sorted({evse for evse, _ in reported})
    [transaction] = data["transactions"]
    assert transaction == {
        "transactionId": tx,
        "evseId": 1,
        "connectorId": 1,
        "idToken": "CARD-1",
        "meterStartWh": "12000",
        "meterStopWh": "17250",
        "energyWh": "5250",
        "stopReason": "EVDisconnected",
        "active": False,
    }


def settled(data: dict[str, Any]) -> bool:
    station = data["station"]
    return bool(
        station
        and not station["connected"]
        and data["transactions"]
        and not data["transactions"][0]["active"]
        and any(c["availability"] == "Occupied" for c in station["connectors"])
    )


@pytest.mark.parametrize("protocol", VERSIONS)
async def test_a_session_is_seen_by_the_operator_and_survives_a_restart(
    start_server: Callable[..., ServerProcess], tmp_path: Path, protocol: str
) -> None:
    # The user's path: no database URL, the embedded PostgreSQL in a data folder.
    data_dir = str(tmp_path / "data")
    server = start_server(None, "--data-dir", data_dir)
    async with connect(server, "CS-SESSION", protocol) as station:
        tx = await run_session(station)
        reported = station.station_connectors
    data = await eventually(lambda: graphql(server, STATION_QUERY, id="CS-SESSION"), settled)
    check_operator_view(data, protocol, tx, reported)
    assert server.stop() == 0

    restarted = start_server(None, "--data-dir", data_dir)
    data = await graphql(restarted, STATION_QUERY, id="CS-SESSION")
    check_operator_view(data, protocol, tx, reported)


@pytest.mark.parametrize("protocol", VERSIONS)
async def test_live_energy_follows_meter_values_while_charging(
    shared_server: ServerProcess, protocol: str
) -> None:
    station_id = f"CS-LIVE-{protocol}"
    async with connect(shared_server, station_id, protocol) as station:
        await station.boot("A", "B", "S", "F")
        tx = await station.start(2, "T", 500, "2026-11-24T10:00:00Z")
        await station.meter(tx, 2, "2026-11-24T10:01:00Z", "1.75", "kWh")
    data = await eventually(
        lambda: graphql(shared_server, STATION_QUERY, id=station_id),
        lambda d: bool(d["transactions"]) and d["transactions"][0]["energyWh"] == "1250.00",
    )
    assert data["transactions"][0]["active"] is True
    active = await graphql(shared_server, "{ transactions(active: true) { stationId } }")
    assert {"stationId": station_id} in active["transactions"]


async def test_a_mixed_fleet_is_one_model(shared_server: ServerProcess) -> None:
    """Stations of every version at the same URL at once, seen through one API."""
    ids = {protocol: f"CS-FLEET-{protocol}" for protocol in VERSIONS}

    async def session(protocol: str) -> str:
        async with connect(shared_server, ids[protocol], protocol) as station:
            return await run_session(station)

    transactions = dict(zip(VERSIONS, await asyncio.gather(*map(session, VERSIONS)), strict=True))
    fleet = await eventually(
        lambda: graphql(
            shared_server,
            "{ stations { id protocol connected } "
            "transactions(active: false) { stationId transactionId energyWh } }",
        ),
        lambda d: (
            sum(t["stationId"] in ids.values() for t in d["transactions"]) == 3
            and not any(s["connected"] for s in d["stations"] if s["id"] in ids.values())
        ),
    )
    protocols = {s["id"]: s["protocol"] for s in fleet["stations"] if s["id"] in ids.values()}
    assert protocols == {station_id: protocol for protocol, station_id in ids.items()}
    ended = {t["stationId"]: t for t in fleet["transactions"] if t["stationId"] in ids.values()}
    for protocol, station_id in ids.items():
        assert ended[station_id]["transactionId"] == transactions[protocol]
        assert ended[station_id]["energyWh"] == "5250"
