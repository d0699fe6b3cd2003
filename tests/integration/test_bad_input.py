"""Bad input gets the OCPP-J answer the spec prescribes and never takes the server down."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support import ServerProcess, eventually, offer, stored_events


async def exchange(ws: Any, frame: str) -> list[Any]:
    await ws.send(frame)
    return list(json.loads(await ws.recv()))


def call(action: str, payload: dict[str, Any], message_id: str = "m1") -> str:
    return json.dumps([2, message_id, action, payload])


@pytest.fixture
async def raw16(shared_server: ServerProcess) -> Any:
    async with websockets.connect(
        shared_server.ocpp_url("CP-RAW"), subprotocols=offer("ocpp1.6")
    ) as ws:
        yield ws


# frame, message id answered, error code in 1.6, error code in 2.0.1 and 2.1
MALFORMED = [
    ("{not json", "-1", "FormationViolation", "RpcFrameworkError"),
    # Python reads NaN and Infinity; JSON (RFC 8259) has neither, so no station may send them.
    ('[2, "m1", "Heartbeat", {"x": NaN}]', "-1", "FormationViolation", "RpcFrameworkError"),
    ('[2, "m1", "Heartbeat", {"x": -Infinity}]', "-1", "FormationViolation", "RpcFrameworkError"),
    ('{"a": 1}', "-1", "ProtocolError", "RpcFrameworkError"),
    ("[2]", "-1", "ProtocolError", "RpcFrameworkError"),
    ('[7, "m2", "Heartbeat", {}]', "m2", "ProtocolError", "MessageTypeNotSupported"),
    ('[2, "m3", "Heartbeat"]', "m3", "ProtocolError", "RpcFrameworkError"),
    ('[2, "m4", "Heartbeat", []]', "m4", "FormationViolation", "FormatViolation"),
]


@pytest.mark.parametrize("protocol", ["ocpp1.6", "ocpp2.0.1", "ocpp2.1"])
@pytest.mark.parametrize(("frame", "message_id", "code16", "code2x"), MALFORMED)
async def test_malformed_frames_get_a_call_error_and_the_connection_lives(
    shared_server: ServerProcess,
    protocol: str,
    frame: str,
    message_id: str,
    code16: str,
    code2x: str,
) -> None:
    url = shared_server.ocpp_url(f"CS-RAW-{protocol}")
    async with websockets.connect(url, subprotocols=offer(protocol)) as ws:
        reply = await exchange(ws, frame)
        assert reply[:3] == [4, message_id, code16 if protocol == "ocpp1.6" else code2x]
        assert isinstance(reply[3], str) and reply[3] and reply[4] == {}
        reply = await exchange(ws, call("Heartbeat", {}, "after"))
        assert reply[0] == 3 and reply[1] == "after"


@pytest.mark.parametrize(
    ("action", "payload", "code"),
    [
        ("MakeCoffee", {}, "NotImplemented"),  # no such OCPP action
        ("RemoteStartTransaction", {"idTag": "X"}, "NotSupported"),  # known, not for a CSMS
        ("BootNotification", {"chargePointVendor": "A"}, "OccurenceConstraintViolation"),
        (
            "BootNotification",
            {"chargePointVendor": 5, "chargePointModel": "M"},
            "TypeConstraintViolation",
        ),
        (
            "BootNotification",
            {"chargePointVendor": "A" * 21, "chargePointModel": "M"},
            "TypeConstraintViolation",
        ),
        (
            "BootNotification",
            {"chargePointVendor": "A", "chargePointModel": "M", "x": 1},
            "FormationViolation",
        ),
        (
            "StatusNotification",
            {"connectorId": 1, "errorCode": "NoError", "status": "Sleepy"},
            "PropertyConstraintViolation",
        ),
        (
            "StartTransaction",
            {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": "yesterday"},
            "TypeConstraintViolation",
        ),
    ],
)
async def test_calls_the_csms_cannot_accept_get_the_spec_error_code(
    raw16: Any, action: str, payload: dict[str, Any], code: str
) -> None:
    reply = await exchange(raw16, call(action, payload, "bad"))
    assert reply[:3] == [4, "bad", code]
    assert reply[3]  # a description that says why


TX = {"eventType": "Started", "triggerReason": "Authorized", "seqNo": 0}


@pytest.mark.parametrize("protocol", ["ocpp2.0.1", "ocpp2.1"])
@pytest.mark.parametrize(
    ("action", "payload", "code"),
    [
        ("MakeCoffee", {}, "NotImplemented"),
        ("RequestStartTransaction", {"idToken": {}, "remoteStartId": 1}, "NotSupported"),
        ("BootNotification", {"reason": "PowerUp"}, "OccurrenceConstraintViolation"),
        (
            "BootNotification",
            {"reason": "Bored", "chargingStation": {"model": "M", "vendorName": "V"}},
            "PropertyConstraintViolation",
        ),
        (
            "BootNotification",
            {"reason": "PowerUp", "chargingStation": {"model": "M", "vendorName": "V"}, "x": 1},
            "FormatViolation",
        ),
        ("Heartbeat", {"customData": 5}, "TypeConstraintViolation"),
        (
            "TransactionEvent",
            {**TX, "timestamp": "yesterday", "transactionInfo": {"transactionId": "T"}},
            "TypeConstraintViolation",
        ),
        (
            "TransactionEvent",
            {**TX, "timestamp": "2026-11-24T10:00:00Z", "transactionInfo": {"transactionId": 7}},
            "TypeConstraintViolation",
        ),
    ],
)
async def test_2x_calls_the_csms_cannot_accept_get_the_spec_error_code(
    shared_server: ServerProcess, protocol: str, action: str, payload: dict[str, Any], code: str
) -> None:
    url = shared_server.ocpp_url(f"CS-BAD-{protocol}")
    async with websockets.connect(url, subprotocols=offer(protocol)) as ws:
        reply = await exchange(ws, call(action, payload, "bad"))
    assert reply[:3] == [4, "bad", code]
    assert reply[3]


async def test_a_frame_over_the_limit_closes_that_connection_only(
    shared_server: ServerProcess,
) -> None:
    async with websockets.connect(
        shared_server.ocpp_url("CP-BIG"), subprotocols=offer("ocpp1.6"), max_size=None
    ) as ws:
        big = call("DataTransfer", {"vendorId": "v", "data": "x" * (2 << 20)})
        with pytest.raises(ConnectionClosed) as closed:
            await ws.send(big)
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    async with websockets.connect(
        shared_server.ocpp_url("CP-BIG"), subprotocols=offer("ocpp1.6")
    ) as ws:
        assert (await exchange(ws, call("Heartbeat", {})))[0] == 3


async def test_a_connection_without_an_ocpp_subprotocol_is_closed(
    shared_server: ServerProcess,
) -> None:
    for offered in ([], ["chat"]):
        async with websockets.connect(
            shared_server.ocpp_url("CP-NOPROTO"), subprotocols=offer(*offered) or None
        ) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1002


async def test_a_path_without_a_valid_identity_is_refused(shared_server: ServerProcess) -> None:
    for path in ("", "a:b", "x" * 49):
        with pytest.raises(InvalidStatus) as refused:
            async with websockets.connect(
                shared_server.ocpp_url(path), subprotocols=offer("ocpp1.6")
            ):
                pass
        assert refused.value.response.status_code == 404


async def test_a_second_connection_replaces_the_first(shared_server: ServerProcess) -> None:
    url = shared_server.ocpp_url("CP-TWICE")
    async with websockets.connect(url, subprotocols=offer("ocpp1.6")) as first:
        await exchange(first, call("Heartbeat", {}))
        async with websockets.connect(url, subprotocols=offer("ocpp1.6")) as second:
            with pytest.raises(ConnectionClosed) as closed:
                await first.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000
            assert (await exchange(second, call("Heartbeat", {})))[0] == 3
    # The replaced connection's close said nothing about the station: one disconnect, the last.
    assert shared_server.database_url is not None
    disconnects = await eventually(
        lambda: stored_events(shared_server.database_url or "", "CP-TWICE", "Disconnected"),
        lambda events: len(events) >= 1,
    )
    connects = await stored_events(shared_server.database_url, "CP-TWICE", "Connected")
    assert len(connects) == 2 and len(disconnects) == 1
    assert disconnects[0]["connection_id"] == connects[1]["connection_id"]


async def test_the_server_still_serves_after_all_that(shared_server: ServerProcess) -> None:
    assert shared_server.process is not None and shared_server.process.poll() is None
    async with httpx.AsyncClient() as client:
        assert (await client.get(shared_server.http_url("/health"))).status_code == 200
