"""Nothing answered is lost: not on a crash, not with two servers on one database."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable

from ocpp.v16 import call

from tests.support import ServerProcess, eventually, graphql, station16

TRANSACTIONS = "{ transactions(first: 1000) { stationId transactionId } }"


async def test_an_answered_start_survives_sigkill(
    start_server: Callable[..., ServerProcess], database_url: str
) -> None:
    server = start_server(database_url)
    async with station16(server, "CP-CRASH") as cp:
        start = await cp.call(
            call.StartTransaction(
                connector_id=1, id_tag="T", meter_start=0, timestamp="2026-11-24T06:00:00Z"
            )
        )
        server.kill()  # right after the answer: no shutdown, no flush
    restarted = start_server(database_url)
    data = await eventually(
        lambda: graphql(restarted, TRANSACTIONS), lambda d: len(d["transactions"]) == 1
    )
    assert data["transactions"] == [
        {"stationId": "CP-CRASH", "transactionId": str(start.transaction_id)}
    ]
    async with station16(restarted, "CP-CRASH") as cp:
        again = await cp.call(
            call.StartTransaction(
                connector_id=1, id_tag="T", meter_start=0, timestamp="2026-11-24T06:00:00Z"
            )
        )
        later = await cp.call(
            call.StartTransaction(
                connector_id=1, id_tag="T", meter_start=5, timestamp="2026-11-24T06:30:00Z"
            )
        )
    assert again.transaction_id == start.transaction_id  # recognised after the crash
    assert later.transaction_id != start.transaction_id  # numbers are never reused


async def test_two_servers_on_one_database_hand_out_unique_transaction_ids(
    start_server: Callable[..., ServerProcess], database_url: str
) -> None:
    servers = [start_server(database_url), start_server(database_url)]
    stations, starts_each = 20, 5

    async def charge(index: int) -> list[int]:
        server = servers[index % 2]
        ids = []
        async with station16(server, f"CP-NODE-{index}") as cp:
            for n in range(starts_each):
                start = await cp.call(
                    call.StartTransaction(
                        connector_id=1,
                        id_tag="T",
                        meter_start=n,
                        timestamp=f"2026-11-24T05:{n:02d}:00Z",
                    )
                )
                ids.append(int(start.transaction_id))
        return ids

    ids = [i for batch in await asyncio.gather(*map(charge, range(stations))) for i in batch]
    assert len(ids) == stations * starts_each
    assert len(set(ids)) == len(ids)
    for server in servers:  # each node reads the same projections, whichever node ran them
        data = await eventually(
            functools.partial(graphql, server, TRANSACTIONS),
            lambda d: len(d["transactions"]) == len(ids),
        )
        assert {int(t["transactionId"]) for t in data["transactions"]} == set(ids)
