"""Resent messages are recognised; messages for unknown transactions are answered and kept."""

from __future__ import annotations

from ocpp.v16 import call

from tests.support import ServerProcess, eventually, graphql, station16, stored_events

START = {
    "connector_id": 1,
    "id_tag": "CARD",
    "meter_start": 100,
    "timestamp": "2026-11-24T08:00:00Z",
}


async def test_a_resent_start_gets_the_same_transaction(shared_server: ServerProcess) -> None:
    async with station16(shared_server, "CP-RETRY") as cp:
        first = await cp.call(call.StartTransaction(**START))
    # The answer was "lost": the station reconnects and sends the same request again.
    async with station16(shared_server, "CP-RETRY") as cp:
        again = await cp.call(call.StartTransaction(**START))
        other = await cp.call(
            call.StartTransaction(**{**START, "timestamp": "2026-11-24T09:00:00Z"})
        )
        stop = call.StopTransaction(
            meter_stop=900, timestamp="2026-11-24T08:30:00Z", transaction_id=first.transaction_id
        )
        await cp.call(stop)
        await cp.call(stop)  # resent stop: answered, changes nothing
    assert again.transaction_id == first.transaction_id
    assert other.transaction_id != first.transaction_id
    data = await eventually(
        lambda: graphql(
            shared_server,
            '{ transactions(stationId: "CP-RETRY") { transactionId energyWh active } }',
        ),
        lambda d: len(d["transactions"]) == 2 and any(not t["active"] for t in d["transactions"]),
    )
    assert {"transactionId": str(first.transaction_id), "energyWh": "800", "active": False} in data[
        "transactions"
    ]


async def test_messages_for_an_unknown_transaction_are_answered_and_recorded(
    shared_server: ServerProcess,
) -> None:
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
