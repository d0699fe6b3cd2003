"""Resent messages are recognised; messages for unknown transactions are answered and kept."""

from __future__ import annotations

import pytest
from ocpp.v16 import call

from tests.stations import VERSIONS, connect
from tests.support import ServerProcess, eventually, graphql, station16, stored_events

AT = "2026-11-24T08:00:00Z"


@pytest.mark.parametrize("protocol", VERSIONS)
async def test_a_resent_start_gets_the_same_transaction(
    shared_server: ServerProcess, protocol: str
) -> None:
    station_id = f"CS-RETRY-{protocol}"
    async with connect(shared_server, station_id, protocol) as station:
        first = await station.start(1, "CARD", 100, AT)
    # The answer was "lost": the station reconnects and sends the same request again.
    async with connect(shared_server, station_id, protocol) as station:
        again = await station.start(1, "CARD", 100, AT)
        other = await station.start(1, "CARD", 100, "2026-11-24T09:00:00Z")
        await station.stop(first, 1, 900, "2026-11-24T08:30:00Z", "Local", None)
        await station.resend()  # resent stop: answered, changes nothing
    assert again == first and other != first
    data = await eventually(
        lambda: graphql(
            shared_server,
            "query($id: String!) { transactions(stationId: $id) "
            "{ transactionId energyWh active } }",
            id=station_id,
        ),
        lambda d: len(d["transactions"]) == 2 and any(not t["active"] for t in d["transactions"]),
    )
    assert {"transactionId": first, "energyWh": "800", "active": False} in data["transactions"]


async def test_messages_for_an_unknown_transaction_are_answered_and_recorded(
    shared_server: ServerProcess,
) -> None:
    """1.6 only: a 2.x station names its transactions, so none of them is unknown."""
    async with station16(shared_server, "CP-ORPHAN") as cp:
        await cp.call(
            call.MeterValues(
                connector_id=1,
                transaction_id=999_999,
                meter_value=[
                    {"timestamp": "2026-11-24T07:00:00Z", "sampledValue": [{"value": "5"}]}
                ],
            )
        )
        answer = await cp.call(
            call.StopTransaction(
                meter_stop=10,
                timestamp="2026-11-24T07:10:00Z",
                transaction_id=999_999,
                id_tag="CARD",
            )
        )
    assert answer.id_tag_info == {"status": "Accepted"}
    assert shared_server.database_url
    reports = await stored_events(
        shared_server.database_url, "CP-ORPHAN", "UnknownTransactionReported"
    )
    assert [(r["transaction_key"], r["message"]) for r in reports] == [
        ("999999", "MeterValues"),
        ("999999", "StopTransaction"),
    ]
    assert reports[1]["data"]["meter_stop_wh"] == 10
    none = await graphql(
        shared_server, '{ transactions(stationId: "CP-ORPHAN") { transactionId } }'
    )
    assert none["transactions"] == []
