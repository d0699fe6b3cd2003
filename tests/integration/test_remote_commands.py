"""Operators command stations through GraphQL: every operation, for 1.6 and 2.0.1, answered,
refused, failed, unanswered and offline; across two server processes; with roles."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import psycopg
import pytest
import websockets
from ocpp.v16 import call

from tests.responders import DIAGNOSTICS, responder
from tests.support import ServerProcess, eventually, graphql, graphql_response, offer, stored_events

RESULT = "{ id state status accepted response failure detail action requestedBy }"
PROTOCOLS = ("ocpp1.6", "ocpp2.0.1")


@pytest.fixture(scope="module")
def servers(
    new_database: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Two nodes on one database; stations answer within 2 s or time out."""
    url = new_database()
    folder = tmp_path_factory.mktemp("nodes")
    nodes = tuple(
        ServerProcess(folder / f"node-{i}.log", url, "--command-timeout", "2").start()
        for i in range(2)
    )
    yield nodes[0], nodes[1]
    for node in nodes:
        node.stop()


async def command(server: ServerProcess, mutation: str, role: str = "operator") -> Any:
    data = await graphql(server, f"mutation {{ result: {mutation} {RESULT} }}", role)
    return data["result"]


# (mutation, the 1.6 call, the 2.0.1 call, what the answering station says)
OPERATIONS = [
    (
        'startCharging(stationId: "$S", idToken: "TAG-1", evseId: 1)',
        "RemoteStartTransaction",
        "RequestStartTransaction",
        "Accepted",
    ),
    (
        'stopCharging(stationId: "$S", transactionId: "17")',
        "RemoteStopTransaction",
        "RequestStopTransaction",
        "Accepted",
    ),
    (
        'unlockConnector(stationId: "$S", evseId: 1)',
        "UnlockConnector",
        "UnlockConnector",
        "Unlocked",
    ),
    ('reset(stationId: "$S", kind: HARD)', "Reset", "Reset", "Accepted"),
    (
        'changeAvailability(stationId: "$S", evseId: 1, operative: false)',
        "ChangeAvailability",
        "ChangeAvailability",
        "Accepted",
    ),
    (
        'getConfiguration(stationId: "$S", keys: [{component: "OCPPCommCtrlr", '
        'variable: "HeartbeatInterval"}])',
        "GetConfiguration",
        "GetVariables",
        None,
    ),
    (
        'changeConfiguration(stationId: "$S", component: "OCPPCommCtrlr", '
        'variable: "HeartbeatInterval", value: "120")',
        "ChangeConfiguration",
        "SetVariables",
        "Accepted",
    ),
    (
        'triggerMessage(stationId: "$S", message: "StatusNotification", evseId: 1)',
        "TriggerMessage",
        "TriggerMessage",
        "Accepted",
    ),
    (
        'updateFirmware(stationId: "$S", location: "https://fw.example/v2.bin", '
        'retrieveAt: "2026-12-01T02:00:00Z")',
        "UpdateFirmware",
        "UpdateFirmware",
        "$FW",
    ),
    ('fetchDiagnostics(stationId: "$S")', "GetDiagnostics", "GetLog", "$DIAG"),
    (
        'setChargingLimit(stationId: "$S", evseId: 1, limit: "16.5", unit: A)',
        "SetChargingProfile",
        "SetChargingProfile",
        "Accepted",
    ),
    (
        'clearChargingLimit(stationId: "$S", evseId: 1)',
        "ClearChargingProfile",
        "ClearChargingProfile",
        "Accepted",
    ),
    (
        'getCompositeSchedule(stationId: "$S", evseId: 1, durationSeconds: 3600)',
        "GetCompositeSchedule",
        "GetCompositeSchedule",
        "Accepted",
    ),
    (
        'reserveNow(stationId: "$S", idToken: "TAG-1", evseId: 1, '
        'expiresAt: "2026-12-01T10:00:00Z")',
        "ReserveNow",
        "ReserveNow",
        "Accepted",
    ),
    (
        'cancelReservation(stationId: "$S", reservationId: 7)',
        "CancelReservation",
        "CancelReservation",
        "Accepted",
    ),
    (
        'sendLocalList(stationId: "$S", version: 3, entries: [{idToken: "TAG-1"}, '
        '{idToken: "TAG-2", status: "Blocked"}])',
        "SendLocalList",
        "SendLocalList",
        "Accepted",
    ),
    ('getLocalListVersion(stationId: "$S")', "GetLocalListVersion", "GetLocalListVersion", None),
    ('clearCache(stationId: "$S")', "ClearCache", "ClearCache", "Accepted"),
    (
        'dataTransfer(stationId: "$S", vendorId: "com.acme", messageId: "ping", data: "hi")',
        "DataTransfer",
        "DataTransfer",
        "Accepted",
    ),
]


def _for(protocol: str, mutation: str, station_id: str) -> str:
    if protocol == "ocpp1.6":  # 1.6 keys have no component
        mutation = mutation.replace('component: "OCPPCommCtrlr", ', "")
    return mutation.replace("$S", station_id)


def _expected_status(protocol: str, status: str | None) -> str | None:
    special = {"$FW": (None, "Accepted"), "$DIAG": (None, "Accepted")}
    if status in special:
        return special[status][protocol != "ocpp1.6"]
    return status


@pytest.mark.parametrize("protocol", (*PROTOCOLS, "ocpp2.1"))
async def test_every_operation_reaches_the_station_and_returns_its_answer(
    servers: tuple[ServerProcess, ServerProcess], protocol: str
) -> None:
    server, _ = servers
    station_id = f"CS-ALL-{protocol}"
    async with responder(server, station_id, protocol) as station:
        for mutation, action16, action2x, status in OPERATIONS:
            action = action16 if protocol == "ocpp1.6" else action2x
            result = await command(server, _for(protocol, mutation, station_id))
            assert result["state"] == "Answered", (mutation, result)
            assert result["action"] == action
            assert result["status"] == _expected_status(protocol, status), result
            assert result["accepted"] is True
            assert result["requestedBy"].startswith("operator:")
            assert station.received[-1][0] == action  # the station got it, schema-valid
    history = await eventually(  # the read model follows the commands a moment later
        lambda: graphql(
            server,
            "query($id: String!) { remoteCommands(stationId: $id) { action state } }",
            id=station_id,
        ),
        lambda data: len(data["remoteCommands"]) == len(OPERATIONS),
    )
    actions = {c["action"] for c in history["remoteCommands"]}
    assert len(actions) == len(OPERATIONS)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_what_the_station_receives_says_what_the_operator_asked(
    servers: tuple[ServerProcess, ServerProcess], protocol: str
) -> None:
    server, _ = servers
    station_id = f"CS-ARGS-{protocol}"
    async with responder(server, station_id, protocol) as station:
        await command(
            server, f'setChargingLimit(stationId: "{station_id}", evseId: 2, limit: "7.3", unit: A)'
        )
        profile = station.last("SetChargingProfile")
        if protocol == "ocpp1.6":
            schedule = profile["cs_charging_profiles"]["charging_schedule"]
            assert profile["connector_id"] == 2
        else:
            schedule = profile["charging_profile"]["charging_schedule"][0]
            assert profile["evse_id"] == 2
        # No rounding on the way: 7.3 A stays 7.3 A.
        assert str(schedule["charging_schedule_period"][0]["limit"]) == "7.3"
        assert schedule["charging_rate_unit"] == "A"
        result = await command(
            server,
            f'getCompositeSchedule(stationId: "{station_id}", evseId: 1, durationSeconds: 600)',
        )
        if protocol == "ocpp1.6":
            assert result["response"]["chargingSchedule"]["chargingSchedulePeriod"] == [
                {"startPeriod": 0, "limit": 7360.5}
            ]
        started = await command(
            server, f'startCharging(stationId: "{station_id}", idToken: "TAG-9", evseId: 2)'
        )
        sent = station.last(
            "RemoteStartTransaction" if protocol == "ocpp1.6" else "RequestStartTransaction"
        )
        if protocol == "ocpp1.6":
            assert sent == {"id_tag": "TAG-9", "connector_id": 2}
        else:
            assert sent["id_token"] == {"id_token": "TAG-9", "type": "Central"}
            assert sent["evse_id"] == 2 and isinstance(sent["remote_start_id"], int)
        assert started["accepted"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_station_that_refuses_is_answered_as_refused(
    servers: tuple[ServerProcess, ServerProcess], protocol: str
) -> None:
    server, _ = servers
    station_id = f"CS-NO-{protocol}"
    async with responder(server, station_id, protocol, "reject"):
        for mutation in (
            f'startCharging(stationId: "{station_id}", idToken: "TAG-1")',
            f'unlockConnector(stationId: "{station_id}", evseId: 1)',
            f'reset(stationId: "{station_id}")',
            f'sendLocalList(stationId: "{station_id}", version: 1, entries: [])',
            f'clearCache(stationId: "{station_id}")',
        ):
            result = await command(server, mutation)
            assert result["state"] == "Answered", result
            assert result["status"] in ("Rejected", "UnlockFailed", "Failed")
            assert result["accepted"] is False


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_no_answer_a_callerror_a_lost_connection_and_no_station_are_clear_failures(
    servers: tuple[ServerProcess, ServerProcess], protocol: str
) -> None:
    server, _ = servers
    silent_id, broken_id = f"CS-SILENT-{protocol}", f"CS-BROKEN-{protocol}"
    async with responder(server, silent_id, protocol, "silent"):
        timed_out = await command(server, f'clearCache(stationId: "{silent_id}")')
    assert (timed_out["state"], timed_out["failure"]) == ("Failed", "Timeout")
    assert "2 s" in timed_out["detail"]
    async with responder(server, broken_id, protocol, "error"):
        refused = await command(server, f'clearCache(stationId: "{broken_id}")')
    assert (refused["state"], refused["failure"]) == ("Failed", "CallError")
    assert refused["detail"].startswith("InternalError")
    async with responder(server, silent_id, protocol, "silent") as going:
        pending = asyncio.create_task(command(server, f'clearCache(stationId: "{silent_id}")'))
        for _ in range(100):  # sent, unanswered; then the station goes away
            if going.received:
                break
            await asyncio.sleep(0.05)
    lost = await pending
    assert (lost["state"], lost["failure"]) == ("Failed", "ConnectionLost")
    offline = await command(server, f'clearCache(stationId: "{silent_id}")')
    assert (offline["state"], offline["failure"]) == ("Failed", "StationOffline")
    never = await command(server, 'reset(stationId: "NEVER-SEEN")')
    assert never["failure"] == "StationOffline"


async def test_what_a_version_cannot_do_is_said_before_anything_is_sent(
    servers: tuple[ServerProcess, ServerProcess],
) -> None:
    server, _ = servers
    async with responder(server, "CS-V16", "ocpp1.6") as old:
        evse_reset = await command(server, 'reset(stationId: "CS-V16", evseId: 1)')
        words = await command(server, 'stopCharging(stationId: "CS-V16", transactionId: "A-1")')
        coarse = await command(
            server, 'setChargingLimit(stationId: "CS-V16", limit: "7.25", unit: A)'
        )
    assert (evse_reset["failure"], words["failure"]) == ("NotSupported", "InvalidRequest")
    assert "1.6" in evse_reset["detail"] and "integers" in words["detail"]
    assert coarse["failure"] == "InvalidRequest"  # 1.6 limits are multiples of 0.1
    async with responder(server, "CS-V2", "ocpp2.0.1") as new:
        no_component = await command(
            server, 'changeConfiguration(stationId: "CS-V2", variable: "X", value: "1")'
        )
    assert no_component["failure"] == "InvalidRequest" and "component" in no_component["detail"]
    assert old.received == [] and new.received == []


async def test_a_station_password_is_never_sent_as_a_configuration_change(
    servers: tuple[ServerProcess, ServerProcess],
) -> None:
    server, _ = servers
    secret = "never-kept-in-the-history"
    async with responder(server, "CS-SECRET", "ocpp2.0.1") as station:
        for variable, component in (
            ("BasicAuthPassword", "SecurityCtrlr"),
            ("AuthorizationKey", None),
            ("authorizationKey", None),  # 1.6 keys are case-insensitive
        ):
            refused = await graphql_response(
                server,
                """mutation($variable: String!, $component: String, $value: String!) {
                    changeConfiguration(stationId: "CS-SECRET", variable: $variable,
                        component: $component, value: $value) { state } }""",
                server.token("operator"),
                variable=variable,
                component=component,
                value=secret,
            )
            assert "setStationPassword" in refused["errors"][0]["message"]
    assert station.received == []
    assert server.database_url
    async with await psycopg.AsyncConnection.connect(server.database_url) as conn:
        cursor = await conn.execute(
            "SELECT count(*) FROM csms_events "
            "WHERE position(%s IN convert_from(state, 'UTF8')) > 0",
            (secret,),
        )
        assert await cursor.fetchone() == (0,)
    history = await graphql(server, '{ remoteCommands(stationId: "CS-SECRET") { id } }', "auditor")
    assert history["remoteCommands"] == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_command_sent_through_another_node_reaches_the_station(
    servers: tuple[ServerProcess, ServerProcess], protocol: str
) -> None:
    holding, other = servers
    station_id = f"CS-ROUTED-{protocol}"
    async with responder(holding, station_id, protocol) as station:
        result = await command(other, f'reset(stationId: "{station_id}", kind: SOFT)')
        assert station.received and station.received[-1][0] == "Reset"
    assert (result["state"], result["status"]) == ("Answered", "Accepted")
    [sent] = await _command_events(holding, result["id"], "Sent")
    assert sent["node"].endswith(f":{holding.process.pid}")  # type: ignore[union-attr]


async def _command_events(server: ServerProcess, command_id: str, name: str) -> list[Any]:
    assert server.database_url
    async with await psycopg.AsyncConnection.connect(server.database_url) as conn:
        cursor = await conn.execute(
            "SELECT state FROM csms_events WHERE originator_id = %s AND topic LIKE %s",
            (uuid.UUID(command_id), f"%.{name}"),
        )
        return [json.loads(bytes(row[0])) for row in await cursor.fetchall()]


async def test_roles_are_enforced(servers: tuple[ServerProcess, ServerProcess]) -> None:
    server, _ = servers
    reset = 'mutation { reset(stationId: "CS-ROLES") { state } }'
    anonymous = await graphql_response(server, reset, None)
    assert "API token is required" in anonymous["errors"][0]["message"]
    wrong = await graphql_response(server, reset, "csms_not-a-real-token")
    assert "API token is required" in wrong["errors"][0]["message"]
    auditor = await graphql_response(server, reset, server.token("auditor"))
    assert "auditor role may not" in auditor["errors"][0]["message"]
    billing = await graphql_response(server, "{ stations { id } }", server.token("billing"))
    assert "billing role may not" in billing["errors"][0]["message"]
    # Nothing happened: no command was recorded for the refused mutations.
    history = await graphql(server, '{ remoteCommands(stationId: "CS-ROLES") { id } }', "auditor")
    assert history["remoteCommands"] == []
    assert (await graphql(server, "{ transactions { stationId } }", "billing"))[
        "transactions"
    ] is not None


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_diagnostics_are_uploaded_recorded_and_downloadable(
    servers: tuple[ServerProcess, ServerProcess], protocol: str
) -> None:
    server, _ = servers
    station_id = f"CS-DIAG-{protocol}"
    async with responder(server, station_id, protocol) as station:
        result = await command(server, f'fetchDiagnostics(stationId: "{station_id}")')
        upload = await station.uploaded()
    assert result["state"] == "Answered" and upload.status_code == 201, upload.text
    data = await graphql(
        server,
        "query($id: String!) { station(id: $id) { uploads { id commandId fileName size "
        "sha256 downloadPath } } }",
        id=station_id,
    )
    [file] = data["station"]["uploads"]
    assert (file["commandId"], file["fileName"], file["size"]) == (
        result["id"],
        "diagnostics.log",
        len(DIAGNOSTICS),
    )
    async with httpx.AsyncClient() as http:
        url = server.http_url(file["downloadPath"])
        refused = await http.get(url)
        billing = await http.get(
            url, headers={"Authorization": f"Bearer {server.token('billing')}"}
        )
        got = await http.get(url, headers={"Authorization": f"Bearer {server.token('auditor')}"})
        stray = await http.post(server.http_url(f"/uploads/{file['id']}"), content=b"x")
    assert (refused.status_code, billing.status_code, stray.status_code) == (401, 403, 404)
    assert got.status_code == 200 and got.content == DIAGNOSTICS
    [recorded] = await stored_events(server.database_url or "", station_id, "FileUploaded")
    assert recorded["sha256"] == file["sha256"] and recorded["command_id"] == result["id"]


def _bearer(server: ServerProcess, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.token(role)}"}


async def _ws_messages(server: ServerProcess, query: str, received: list[Any]) -> None:
    url = server.http_url().replace("http://", "ws://")
    async with websockets.connect(url, subprotocols=offer("graphql-transport-ws")) as ws:
        token = server.token("operator")
        await ws.send(
            json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}})
        )
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query}}))
        async for message in ws:
            received.append(json.loads(message))


async def test_subscriptions_follow_station_status_and_command_results(
    servers: tuple[ServerProcess, ServerProcess],
) -> None:
    server, other = servers
    statuses: list[Any] = []
    results: list[Any] = []
    watchers = [
        asyncio.create_task(
            _ws_messages(
                server,
                'subscription { stationChanges(stationId: "CS-LIVE") '
                "{ id connected connectors { connectorId status } } }",
                statuses,
            )
        ),
        # On the other node: results are settled on the node holding the station.
        asyncio.create_task(
            _ws_messages(
                other,
                'subscription { commandResults(stationId: "CS-LIVE") { action status failure } }',
                results,
            )
        ),
    ]
    try:
        await asyncio.sleep(2)  # subscribed (there is no acknowledgement to wait for)
        async with responder(server, "CS-LIVE", "ocpp1.6") as station:
            for status in ("Available", "Faulted"):
                await station.client.call(
                    call.StatusNotification(connector_id=1, error_code="NoError", status=status)
                )
            await command(server, 'clearCache(stationId: "CS-LIVE")')
        await command(server, 'clearCache(stationId: "CS-LIVE")')  # gone: offline
        for _ in range(100):
            if len(results) >= 2 and any(_status_of(m) == "Faulted" for m in statuses):
                break
            await asyncio.sleep(0.1)
    finally:
        for watcher in watchers:
            watcher.cancel()
    assert any(_status_of(m) == "Faulted" for m in statuses), statuses
    assert [m["payload"]["data"]["commandResults"] for m in results] == [
        {"action": "ClearCache", "status": "Accepted", "failure": None},
        {"action": None, "status": None, "failure": "StationOffline"},
    ]


def _status_of(message: dict[str, Any]) -> str | None:
    station = ((message.get("payload") or {}).get("data") or {}).get("stationChanges") or {}
    return next((c["status"] for c in station.get("connectors", []) if c["connectorId"] == 1), None)
