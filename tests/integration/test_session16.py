"""A 1.6J charge point's whole session, seen by an operator through GraphQL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ocpp.v16 import call
from ocpp.v16.enums import RegistrationStatus

from tests.support import ServerProcess, eventually, graphql, station16

STATION_QUERY = """query($id: String!) {
  station(id: $id) {
    id vendor model serialNumber firmwareVersion registrationStatus connected protocol
    firmwareStatus logUploadStatus
    connectors { evseId connectorId status errorCode }
  }
  transactions(stationId: $id) {
    transactionId evseId connectorId idToken meterStartWh meterStopWh energyWh stopReason active
  }
}"""


def meter_value(timestamp: str, wh: str, unit: str = "Wh") -> dict[str, Any]:
    return {
        "timestamp": timestamp,
        "sampledValue": [
            {"value": wh, "measurand": "Energy.Active.Import.Register", "unit": unit},
            {"value": "11.2", "measurand": "Power.Active.Import", "unit": "kW"},
        ],
    }


async def run_session(server: ServerProcess, station_id: str) -> int:
    async with station16(server, station_id) as cp:
        boot = await cp.call(
            call.BootNotification(
                charge_point_vendor="Acme",
                charge_point_model="Wallbox 22",
                charge_point_serial_number="SN-42",
                firmware_version="1.2.3",
            )
        )
        assert boot.status == RegistrationStatus.accepted
        assert boot.interval > 0 and boot.current_time.endswith("Z")
        for connector in (0, 1, 2):
            await cp.call(
                call.StatusNotification(
                    connector_id=connector,
                    error_code="NoError",
                    status="Available",
                    timestamp="2026-11-24T09:59:00Z",
                )
            )
        assert (await cp.call(call.Authorize(id_tag="CARD-1"))).id_tag_info["status"] == "Accepted"
        await cp.call(
            call.StatusNotification(connector_id=1, error_code="NoError", status="Preparing")
        )
        start = await cp.call(
            call.StartTransaction(
                connector_id=1,
                id_tag="CARD-1",
                meter_start=12_000,
                timestamp="2026-11-24T10:00:00Z",
            )
        )
        assert isinstance(start.transaction_id, int)
        await cp.call(
            call.StatusNotification(connector_id=1, error_code="NoError", status="Charging")
        )
        await cp.call(
            call.MeterValues(
                connector_id=1,
                transaction_id=start.transaction_id,
                meter_value=[meter_value("2026-11-24T10:15:00Z", "14.5", "kWh")],
            )
        )
        hb = await cp.call(call.Heartbeat())
        assert hb.current_time.endswith("Z")
        await cp.call(call.FirmwareStatusNotification(status="Idle"))
        await cp.call(call.DiagnosticsStatusNotification(status="Idle"))
        data = await cp.call(call.DataTransfer(vendor_id="com.acme", message_id="x", data="y"))
        assert data.status == "UnknownVendorId"
        await cp.call(
            call.SecurityEventNotification(
                type="SettingSystemTime", tech_info="NTP", timestamp="2026-11-24T10:16:00Z"
            )
        )
        await cp.call(call.LogStatusNotification(status="Idle", request_id=7))
        await cp.call(call.SignedFirmwareStatusNotification(status="Downloading", request_id=8))
        stop = await cp.call(
            call.StopTransaction(
                meter_stop=17_250,
                timestamp="2026-11-24T10:30:00Z",
                transaction_id=start.transaction_id,
                id_tag="CARD-1",
                reason="EVDisconnected",
                transaction_data=[meter_value("2026-11-24T10:30:00Z", "17250")],
            )
        )
        assert stop.id_tag_info["status"] == "Accepted"
        await cp.call(
            call.StatusNotification(connector_id=1, error_code="NoError", status="Finishing")
        )
    return int(start.transaction_id)


def check_operator_view(data: dict[str, Any], transaction_id: int) -> None:
    station = data["station"]
    assert station["vendor"] == "Acme" and station["model"] == "Wallbox 22"
    assert station["serialNumber"] == "SN-42" and station["firmwareVersion"] == "1.2.3"
    assert station["registrationStatus"] == "Accepted" and station["protocol"] == "ocpp1.6"
    assert station["firmwareStatus"] == "Downloading" and station["logUploadStatus"] == "Idle"
    statuses = {(c["evseId"], c["connectorId"]): c["status"] for c in station["connectors"]}
    assert statuses == {(0, 0): "Available", (1, 1): "Finishing", (2, 1): "Available"}
    [transaction] = data["transactions"]
    assert transaction == {
        "transactionId": str(transaction_id),
        "evseId": 1,
        "connectorId": 1,
        "idToken": "CARD-1",
        "meterStartWh": 12_000,
        "meterStopWh": 17_250,
        "energyWh": "5250",
        "stopReason": "EVDisconnected",
        "active": False,
    }


async def test_a_session_is_seen_by_the_operator_and_survives_a_restart(
    start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    # The user's path: no database URL, the embedded PostgreSQL in a data folder.
    data_dir = str(tmp_path / "data")
    server = start_server(None, "--data-dir", data_dir)
    transaction_id = await run_session(server, "CP-SESSION")

    def settled(data: dict[str, Any]) -> bool:
        station = data["station"]
        return bool(
            station
            and not station["connected"]
            and data["transactions"]
            and not data["transactions"][0]["active"]
            and any(c["status"] == "Finishing" for c in station["connectors"])
        )

    data = await eventually(lambda: graphql(server, STATION_QUERY, id="CP-SESSION"), settled)
    check_operator_view(data, transaction_id)
    assert server.stop() == 0

    restarted = start_server(None, "--data-dir", data_dir)
    data = await graphql(restarted, STATION_QUERY, id="CP-SESSION")
    check_operator_view(data, transaction_id)


async def test_live_energy_follows_meter_values_while_charging(
    shared_server: ServerProcess,
) -> None:
    async with station16(shared_server, "CP-LIVE") as cp:
        await cp.call(call.BootNotification(charge_point_vendor="A", charge_point_model="B"))
        start = await cp.call(
            call.StartTransaction(
                connector_id=2, id_tag="T", meter_start=500, timestamp="2026-11-24T10:00:00Z"
            )
        )
        await cp.call(
            call.MeterValues(
                connector_id=2,
                transaction_id=start.transaction_id,
                meter_value=[meter_value("2026-11-24T10:01:00Z", "1.75", "kWh")],
            )
        )
    data = await eventually(
        lambda: graphql(shared_server, STATION_QUERY, id="CP-LIVE"),
        lambda d: bool(d["transactions"]) and d["transactions"][0]["energyWh"] == "1250.00",
    )
    assert data["transactions"][0]["active"] is True
    active = await graphql(shared_server, "{ transactions(active: true) { stationId } }")
    assert {"stationId": "CP-LIVE"} in active["transactions"]
