"""Operators register, block, unblock and expire id tokens; stations are answered by them.
Unknown tokens follow the configured policy and are recorded either way. Firmware updates
asked for by an operator show their progress on the station."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201

from tests.responders import responder
from tests.stations import connect
from tests.support import ServerProcess, eventually, graphql, graphql_response, stored_events

TOKEN = "{ idToken tokenType parentIdToken groupIdToken expiresAt blocked registeredBy }"


async def mutate(server: ServerProcess, mutation: str) -> Any:
    return (await graphql(server, f"mutation {{ t: {mutation} {TOKEN} }}"))["t"]


async def id_token_info(station: Any, token: str) -> dict[str, Any]:
    """What the station is told about a token when it asks (keys in the client's snake_case)."""
    if station.protocol == "ocpp1.6":
        answer = await station.send(call16.Authorize(id_tag=token))
        return dict(answer.id_tag_info)
    answer = await station.send(call201.Authorize(id_token={"idToken": token, "type": "ISO14443"}))
    return dict(answer.id_token_info)


@pytest.mark.parametrize("protocol", ["ocpp1.6", "ocpp2.0.1"])
async def test_registered_tokens_decide_what_stations_are_told(
    shared_server: ServerProcess, protocol: str
) -> None:
    server = shared_server
    ok, blocked, old = (f"{name}-{protocol}" for name in ("OK", "BLOCKED", "OLD"))
    created = await mutate(
        server,
        f'createIdToken(idToken: "{ok}", tokenType: "ISO14443", parentIdToken: "FLEET-1", '
        f'groupIdToken: "FLEET-1", expiresAt: "2099-01-01T00:00:00Z")',
    )
    assert created["registeredBy"].startswith("operator:") and not created["blocked"]
    await mutate(server, f'createIdToken(idToken: "{blocked}")')
    assert (await mutate(server, f'blockIdToken(idToken: "{blocked}")'))["blocked"]
    await mutate(server, f'createIdToken(idToken: "{old}")')
    expired = await mutate(server, f'expireIdToken(idToken: "{old}")')
    assert expired["expiresAt"] is not None

    station_id = f"CS-TOKENS-{protocol}"
    async with connect(server, station_id, protocol) as station:
        good = await id_token_info(station, ok)
        assert good["status"] == "Accepted"
        if protocol == "ocpp1.6":
            assert good["parent_id_tag"] == "FLEET-1" and good["expiry_date"].startswith("2099")
        else:
            assert good["group_id_token"] == {"id_token": "FLEET-1", "type": "Central"}
            assert good["cache_expiry_date_time"].startswith("2099")
        assert (await id_token_info(station, blocked))["status"] == "Blocked"
        assert (await id_token_info(station, old))["status"] == "Expired"
        assert (await id_token_info(station, f"STRANGER-{protocol}"))["status"] == "Accepted"
        await mutate(server, f'unblockIdToken(idToken: "{blocked}")')
        await mutate(server, f'expireIdToken(idToken: "{old}", never: true)')
        assert (await id_token_info(station, blocked))["status"] == "Accepted"
        assert (await id_token_info(station, old))["status"] == "Accepted"

    [unknown] = await stored_events(
        server.database_url or "", station_id, "UnknownIdTokenPresented"
    )
    assert (unknown["id_token"], unknown["accepted"]) == (f"STRANGER-{protocol}", True)
    listed = await eventually(
        lambda: graphql(server, f'{{ idToken(idToken: "{blocked}") {TOKEN} }}', "auditor"),
        lambda data: data["idToken"] is not None and not data["idToken"]["blocked"],
    )
    assert listed["idToken"]["idToken"] == blocked


async def test_token_mistakes_are_explained(shared_server: ServerProcess) -> None:
    await mutate(shared_server, 'createIdToken(idToken: "TWICE")')
    again = await graphql_response(
        shared_server,
        'mutation { createIdToken(idToken: "TWICE") { idToken } }',
        shared_server.token("operator"),
    )
    assert "already registered" in again["errors"][0]["message"]
    missing = await graphql_response(
        shared_server,
        'mutation { blockIdToken(idToken: "NOBODY") { idToken } }',
        shared_server.token("operator"),
    )
    assert "not registered" in missing["errors"][0]["message"]


async def test_unknown_tokens_can_be_refused(
    start_server: Callable[..., ServerProcess], database_url: str
) -> None:
    server = start_server(database_url, "--unknown-id-tokens", "reject")
    async with connect(server, "CS-STRICT-16", "ocpp1.6") as old:
        assert (await id_token_info(old, "WHO")) == {"status": "Invalid"}
        started = await old.send(
            call16.StartTransaction(
                connector_id=1, id_tag="WHO", meter_start=0, timestamp="2026-11-25T10:00:00Z"
            )
        )
        assert started.id_tag_info == {"status": "Invalid"}  # recorded; the station stops it
    async with connect(server, "CS-STRICT-2", "ocpp2.0.1") as new:
        assert (await id_token_info(new, "WHO")) == {"status": "Unknown"}
        answer = await new.transaction_event(
            "TX-STRICT",
            "Started",
            timestamp="2026-11-25T10:00:00Z",
            trigger_reason="Authorized",
            evse={"id": 1, "connectorId": 1},
            id_token={"idToken": "WHO", "type": "ISO14443"},
        )
        assert answer.id_token_info == {"status": "Unknown"}
    refused = await stored_events(database_url, "CS-STRICT-16", "UnknownIdTokenPresented")
    assert [event["accepted"] for event in refused] == [False, False]


@pytest.mark.parametrize("protocol", ["ocpp1.6", "ocpp2.0.1"])
async def test_a_firmware_update_shows_its_progress_on_the_station(
    shared_server: ServerProcess, protocol: str
) -> None:
    station_id = f"CS-FW-{protocol}"
    calls: Any = call16 if protocol == "ocpp1.6" else call201
    async with responder(shared_server, station_id, protocol) as station:
        result = await graphql(
            shared_server,
            f'mutation {{ updateFirmware(stationId: "{station_id}", '
            'location: "https://fw.example/2.0.bin", retrieveAt: "2026-12-01T02:00:00Z") '
            "{ state } }",
        )
        assert result["updateFirmware"]["state"] == "Answered"
        for status in ("Downloading", "Downloaded", "Installing", "Installed"):
            fields = {} if protocol == "ocpp1.6" else {"request_id": 1}
            await station.client.call(calls.FirmwareStatusNotification(status=status, **fields))
    data = await eventually(
        lambda: graphql(
            shared_server,
            "query($id: String!) { station(id: $id) { firmwareStatus firmwareStatusAt "
            "firmwareUpdate { location retrieveAt requestedBy } } }",
            id=station_id,
        ),
        lambda d: d["station"] is not None and d["station"]["firmwareStatus"] == "Installed",
    )
    update = data["station"]["firmwareUpdate"]
    assert update["location"] == "https://fw.example/2.0.bin"
    assert update["retrieveAt"] == "2026-12-01T02:00:00Z"
    assert update["requestedBy"].startswith("operator:")
