"""What only 2.x stations do: every message they may send, numbered transaction events out of
order, their device model, and 2.1's RPC additions."""

from __future__ import annotations

import json
import random
from typing import Any

import psycopg
import pytest
import websockets
from ocpp.messages import get_validator

from domain.ids import station_uuid
from tests.support import ServerProcess, eventually, graphql, offer

T = "2026-11-24T10:00:00Z"
VERSIONS_2X = ("ocpp2.0.1", "ocpp2.1")

SCHEDULE = {
    "id": 1,
    "chargingRateUnit": "W",
    "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 11000}],
}
PROFILE = {
    "id": 1,
    "stackLevel": 0,
    "chargingProfilePurpose": "TxDefaultProfile",
    "chargingProfileKind": "Absolute",
    "chargingSchedule": [{**SCHEDULE, "startSchedule": T}],
}
CONNECTOR_OCCUPIED = {
    "eventId": 1,
    "timestamp": T,
    "trigger": "Delta",
    "actualValue": "Occupied",
    "eventNotificationType": "HardWiredNotification",
    "component": {"name": "Connector", "evse": {"id": 1, "connectorId": 1}},
    "variable": {"name": "AvailabilityState"},
}
TOKEN = {"idToken": "CARD", "type": "ISO14443"}

# Every message a 2.0.1 station may send to the CSMS, and the answer it must get where the
# answer says more than "received".
MESSAGES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "BootNotification",
        {"reason": "PowerUp", "chargingStation": {"model": "M", "vendorName": "V"}},
        {"status": "Accepted"},
    ),
    ("Authorize", {"idToken": TOKEN}, {"idTokenInfo": {"status": "Accepted"}}),
    ("ClearedChargingLimit", {"chargingLimitSource": "EMS"}, {}),
    (
        "DataTransfer",
        {"vendorId": "com.acme", "data": {"any": [1, 2]}},
        {"status": "UnknownVendorId"},
    ),
    ("FirmwareStatusNotification", {"status": "Installed", "requestId": 1}, {}),
    (
        "Get15118EVCertificate",
        {
            "iso15118SchemaVersion": "urn:iso:15118:2:2013:MsgDef",
            "action": "Install",
            "exiRequest": "AAAA",
        },
        {"status": "Failed"},
    ),
    (
        "GetCertificateStatus",
        {
            "ocspRequestData": {
                "hashAlgorithm": "SHA256",
                "issuerNameHash": "a",
                "issuerKeyHash": "b",
                "serialNumber": "c",
                "responderURL": "http://ocsp.example",
            }
        },
        {"status": "Failed"},
    ),
    ("Heartbeat", {}, {}),
    ("LogStatusNotification", {"status": "Uploaded", "requestId": 3}, {}),
    (
        "MeterValues",
        {"evseId": 1, "meterValue": [{"timestamp": T, "sampledValue": [{"value": 1234.5}]}]},
        {},
    ),
    (
        "NotifyChargingLimit",
        {"chargingLimit": {"chargingLimitSource": "SO", "isGridCritical": True}, "evseId": 1},
        {},
    ),
    (
        "NotifyCustomerInformation",
        {"data": "none", "seqNo": 0, "generatedAt": T, "requestId": 4},
        {},
    ),
    ("NotifyDisplayMessages", {"requestId": 5}, {}),
    (
        "NotifyEVChargingNeeds",
        {"evseId": 1, "chargingNeeds": {"requestedEnergyTransfer": "DC"}},
        {},
    ),
    (
        "NotifyEVChargingSchedule",
        {"timeBase": T, "evseId": 1, "chargingSchedule": SCHEDULE},
        {"status": "Accepted"},
    ),
    ("NotifyEvent", {"generatedAt": T, "seqNo": 0, "eventData": [CONNECTOR_OCCUPIED]}, {}),
    ("NotifyMonitoringReport", {"requestId": 6, "seqNo": 0, "generatedAt": T}, {}),
    ("NotifyReport", {"requestId": 7, "generatedAt": T, "seqNo": 0}, {}),
    (
        "PublishFirmwareStatusNotification",
        {"status": "Published", "location": ["http://x.example"], "requestId": 8},
        {},
    ),
    (
        "ReportChargingProfiles",
        {"requestId": 9, "chargingLimitSource": "CSO", "evseId": 1, "chargingProfile": [PROFILE]},
        {},
    ),
    ("ReservationStatusUpdate", {"reservationId": 10, "reservationUpdateStatus": "Expired"}, {}),
    ("SecurityEventNotification", {"type": "FirmwareUpdated", "timestamp": T}, {}),
    ("SignCertificate", {"csr": "-----BEGIN CERTIFICATE REQUEST-----"}, {"status": "Rejected"}),
    (
        "StatusNotification",
        {"timestamp": T, "connectorStatus": "Available", "evseId": 2, "connectorId": 1},
        {},
    ),
    (
        "TransactionEvent",
        {
            "eventType": "Started",
            "timestamp": T,
            "triggerReason": "Authorized",
            "seqNo": 0,
            "transactionInfo": {"transactionId": "T1"},
            "idToken": TOKEN,
            "evse": {"id": 1},
        },
        {"idTokenInfo": {"status": "Accepted"}},
    ),
]


def version_of(protocol: str) -> str:
    return protocol.removeprefix("ocpp")


class RawStation:
    """A station speaking raw OCPP-J frames, for what a client library would not send."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.count = 0

    async def call(self, action: str, payload: dict[str, Any]) -> list[Any]:
        self.count += 1
        message_id = f"m{self.count}"
        await self.ws.send(json.dumps([2, message_id, action, payload]))
        reply = json.loads(await self.ws.recv())
        assert reply[1] == message_id, reply
        return list(reply)


def raw(server: ServerProcess, station_id: str, protocol: str) -> Any:
    return websockets.connect(server.ocpp_url(station_id), subprotocols=offer(protocol))


async def stored_names(database_url: str, station_id: str) -> set[str]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            "SELECT DISTINCT topic FROM csms_events WHERE originator_id = %s",
            (station_uuid(station_id),),
        )
        return {row[0].rsplit(".", 1)[-1] for row in await cursor.fetchall()}


@pytest.mark.parametrize("protocol", VERSIONS_2X)
async def test_every_message_a_station_may_send_is_answered_per_spec(
    shared_server: ServerProcess, protocol: str
) -> None:
    version = version_of(protocol)
    station_id = f"CS-ALL-{protocol}"
    async with raw(shared_server, station_id, protocol) as ws:
        station = RawStation(ws)
        for action, payload, expected in MESSAGES:
            get_validator(2, action, version).validate(payload)  # the test sends valid requests
            reply = await station.call(action, payload)
            assert reply[0] == 3, f"{action}: {reply}"
            get_validator(3, action, version).validate(reply[2])  # and gets valid answers
            assert expected.items() <= reply[2].items(), f"{action}: {reply[2]}"
        needs = await station.call("NotifyEVChargingNeeds", MESSAGES[13][1])
    # An EV's needs get an honest "no schedule will follow", in each version's words.
    assert needs[2]["status"] == ("Rejected" if version == "2.0.1" else "NoChargingProfile")
    assert shared_server.database_url
    names = await stored_names(shared_server.database_url, station_id)
    assert {
        "Booted",
        "AuthorizationDecided",
        "ChargingLimitCleared",
        "DataTransferReceived",
        "FirmwareStatusReported",
        "CertificateServiceRefused",
        "LogUploadStatusReported",
        "MeterValuesReported",
        "ChargingLimitReported",
        "CustomerInformationReported",
        "DisplayMessagesReported",
        "EVChargingNeedsReported",
        "EVChargingScheduleReported",
        "VariableEventsReported",
        "MonitoringReported",
        "VariablesReported",
        "FirmwarePublicationStatusReported",
        "ChargingProfilesReported",
        "ReservationStatusReported",
        "SecurityEventReported",
        "ConnectorStatusChanged",
    } <= names


def transaction_event(seq_no: int, kind: str, minute: int, **extra: Any) -> dict[str, Any]:
    at = f"2026-11-24T10:{minute:02d}:00Z"
    register = {"value": 10_000 + 500 * minute, "context": extra.pop("context", "Sample.Periodic")}
    return {
        "eventType": kind,
        "timestamp": at,
        "triggerReason": extra.pop("trigger", "MeterValuePeriodic"),
        "seqNo": seq_no,
        "transactionInfo": {"transactionId": "TX-9", **extra.pop("info", {})},
        "meterValue": [{"timestamp": at, "sampledValue": [register]}],
        **extra,
    }


SESSION = [
    transaction_event(
        0,
        "Started",
        0,
        trigger="Authorized",
        context="Transaction.Begin",
        evse={"id": 1, "connectorId": 1},
        idToken=TOKEN,
        info={"chargingState": "Charging"},
    ),
    *(transaction_event(n, "Updated", n * 5, offline=True) for n in range(1, 5)),
    transaction_event(
        5,
        "Ended",
        30,
        trigger="EVCommunicationLost",
        context="Transaction.End",
        info={"stoppedReason": "EVDisconnected", "chargingState": "Idle"},
    ),
]

TRANSACTION_QUERY = """query($id: String!) { transactions(stationId: $id) {
  transactionId evseId connectorId idToken tokenType startedAt stoppedAt stopReason
  chargingState meterStartWh meterStopWh energyWh active missingSeqNos offline } }"""


async def test_events_out_of_order_and_repeated_give_the_in_order_transaction(
    shared_server: ServerProcess,
) -> None:
    shuffled = SESSION + SESSION[1:3]  # some sent twice, as after a lost answer
    random.Random(7).shuffle(shuffled)
    assert shuffled[0]["eventType"] != "Started"  # the start arrives late
    for station_id, delivery in (("CS-INORDER", SESSION), ("CS-SHUFFLED", shuffled)):
        async with raw(shared_server, station_id, "ocpp2.0.1") as ws:
            station = RawStation(ws)
            for payload in delivery:
                assert (await station.call("TransactionEvent", payload))[0] == 3

    async def final(station_id: str) -> dict[str, Any]:
        data = await eventually(
            lambda: graphql(shared_server, TRANSACTION_QUERY, id=station_id),
            lambda d: (
                bool(d["transactions"])
                and not d["transactions"][0]["missingSeqNos"]
                and not d["transactions"][0]["active"]
            ),
        )
        [transaction] = data["transactions"]
        return dict(transaction)

    in_order = await final("CS-INORDER")
    assert in_order == {
        "transactionId": "TX-9",
        "evseId": 1,
        "connectorId": 1,
        "idToken": "CARD",
        "tokenType": "ISO14443",
        "startedAt": "2026-11-24T10:00:00+00:00",
        "stoppedAt": "2026-11-24T10:30:00+00:00",
        "stopReason": "EVDisconnected",
        "chargingState": "Idle",
        "meterStartWh": "10000",
        "meterStopWh": "25000",
        "energyWh": "15000",
        "active": False,
        "missingSeqNos": [],
        "offline": True,
    }
    assert await final("CS-SHUFFLED") == in_order


def report_part(seq_no: int, more: bool, entries: list[tuple[str, str, str]]) -> dict[str, Any]:
    return {
        "requestId": 42,
        "generatedAt": T,
        "seqNo": seq_no,
        "tbc": more,
        "reportData": [
            {
                "component": {"name": component},
                "variable": {"name": variable},
                "variableAttribute": [{"type": "Actual", "value": value, "mutability": "ReadOnly"}],
                "variableCharacteristics": {"dataType": "string", "supportsMonitoring": False},
            }
            for component, variable, value in entries
        ],
    }


VARIABLES_QUERY = """query($id: String!) { station(id: $id) {
  variables { component variable attributeType value mutability characteristics }
  connectors { evseId connectorId status availability } } }"""


@pytest.mark.parametrize("protocol", VERSIONS_2X)
async def test_a_device_model_reported_in_parts_is_kept_and_queryable(
    shared_server: ServerProcess, protocol: str
) -> None:
    station_id = f"CS-MODEL-{protocol}"
    parts = [
        report_part(0, True, [("ChargingStation", "Model", "W22"), ("SecurityCtrlr", "Id", "7")]),
        report_part(1, True, [("OCPPCommCtrlr", "HeartbeatInterval", "300")]),
        report_part(2, False, [("ClockCtrlr", "TimeSource", "NTP")]),
    ]
    later = {
        **CONNECTOR_OCCUPIED,
        "timestamp": "2026-11-24T10:05:00Z",
        "component": {"name": "OCPPCommCtrlr"},
        "variable": {"name": "HeartbeatInterval"},
        "actualValue": "60",
    }
    async with raw(shared_server, station_id, protocol) as ws:
        station = RawStation(ws)
        for part in (parts[2], parts[0], parts[1]):  # parts may come in any order
            assert (await station.call("NotifyReport", part))[0] == 3
        events = {"generatedAt": T, "seqNo": 0, "eventData": [CONNECTOR_OCCUPIED, later]}
        assert (await station.call("NotifyEvent", events))[0] == 3

    # Variables and connectors come from two projections, each at its own pace.
    data = await eventually(
        lambda: graphql(shared_server, VARIABLES_QUERY, id=station_id),
        lambda d: (
            d["station"] is not None
            and len(d["station"]["variables"]) == 5
            and bool(d["station"]["connectors"])
        ),
    )
    station_view = data["station"]
    values = {(v["component"], v["variable"]): v["value"] for v in station_view["variables"]}
    assert values == {
        ("ChargingStation", "Model"): "W22",
        ("SecurityCtrlr", "Id"): "7",
        ("OCPPCommCtrlr", "HeartbeatInterval"): "60",  # the later event's value
        ("ClockCtrlr", "TimeSource"): "NTP",
        ("Connector", "AvailabilityState"): "Occupied",
    }
    heartbeat = next(v for v in station_view["variables"] if v["variable"] == "HeartbeatInterval")
    assert heartbeat["mutability"] == "ReadOnly"
    assert heartbeat["characteristics"] == {"dataType": "string", "supportsMonitoring": False}
    # A connector's state told through NotifyEvent is its status, as StatusNotification's is.
    assert station_view["connectors"] == [
        {"evseId": 1, "connectorId": 1, "status": "Occupied", "availability": "Occupied"}
    ]
    only = await graphql(
        shared_server,
        'query($id: String!) { station(id: $id) { variables(component: "ClockCtrlr") '
        "{ variable value } } }",
        id=station_id,
    )
    assert only["station"]["variables"] == [{"variable": "TimeSource", "value": "NTP"}]


async def test_the_newest_protocol_both_sides_speak_wins(shared_server: ServerProcess) -> None:
    for offered, chosen in (
        (["ocpp1.6", "ocpp2.0.1", "ocpp2.1"], "ocpp2.1"),
        (["ocpp1.6", "ocpp2.0.1"], "ocpp2.0.1"),
        (["ocpp2.1", "ocpp1.6"], "ocpp2.1"),
        (["ocpp1.6"], "ocpp1.6"),
    ):
        async with websockets.connect(
            shared_server.ocpp_url("CS-NEGOTIATE"),
            subprotocols=offer(*offered),
        ) as ws:
            assert ws.subprotocol == chosen


async def test_a_21_send_is_processed_and_never_answered(shared_server: ServerProcess) -> None:
    status = {"timestamp": T, "connectorStatus": "Faulted", "evseId": 3, "connectorId": 1}
    async with raw(shared_server, "CS-SEND", "ocpp2.1") as ws:
        await ws.send(json.dumps([6, "s1", "StatusNotification", status]))
        await ws.send(json.dumps([6, "s2", "NoSuchAction", {}]))  # not even an error back
        await ws.send(json.dumps([5, "r1", "FormatViolation", "bad answer", {}]))
        reply = await RawStation(ws).call("Heartbeat", {})  # the next frame answers this
        assert reply[0] == 3
    data = await eventually(
        lambda: graphql(
            shared_server, '{ station(id: "CS-SEND") { connectors { evseId status } } }'
        ),
        lambda d: d["station"] is not None and bool(d["station"]["connectors"]),
    )
    assert data["station"]["connectors"] == [{"evseId": 3, "status": "Faulted"}]


async def test_21_frames_on_a_201_connection_are_not_supported(
    shared_server: ServerProcess,
) -> None:
    async with raw(shared_server, "CS-OLD", "ocpp2.0.1") as ws:
        await ws.send(json.dumps([6, "s1", "Heartbeat", {}]))
        reply = json.loads(await ws.recv())
        assert reply[:3] == [4, "s1", "MessageTypeNotSupported"]
