"""A server whose event loop is too far behind turns connecting stations away at the handshake."""

from __future__ import annotations

import asyncio
import time

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from adapters.admission import RETRY_SECONDS, LoopLag, by_loop_lag
from adapters.ocpp.gateway import OcppGateway
from adapters.ocpp.v16 import OcppV16
from domain.commands import Command
from tests.support import offer

LIMIT = 0.3


async def never_called(command: Command[object]) -> object:
    raise AssertionError("no station gets this far")


async def test_a_station_connecting_while_the_loop_is_behind_is_told_to_come_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lag = LoopLag()
    lag.start()
    gateway = OcppGateway(
        [OcppV16(300)], never_called, node="test", admission=by_loop_lag(lambda: lag.seconds, LIMIT)
    )
    server = await gateway.start("127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    url = f"ws://127.0.0.1:{port}/CS-LAG"
    try:
        await asyncio.sleep(2 * LoopLag.TICK)
        time.sleep(2 * LIMIT)  # noqa: ASYNC251 - blocks the loop on purpose, as a storm's work does
        await asyncio.sleep(LoopLag.TICK)  # the monitor's late tick
        assert lag.seconds >= LIMIT
        with pytest.raises(InvalidStatus) as refused:
            await websockets.connect(url, subprotocols=offer("ocpp1.6"))
        response = refused.value.response
        assert response.status_code == 503
        assert RETRY_SECONDS[0] <= int(response.headers["Retry-After"]) <= RETRY_SECONDS[1]
        assert "refused 1 connection(s)" in caplog.text

        while lag.seconds >= LIMIT:  # noqa: ASYNC110 - caught up, it decays within a second
            await asyncio.sleep(LoopLag.TICK)
        async with websockets.connect(url, subprotocols=offer("ocpp1.6")) as ws:
            assert ws.subprotocol == "ocpp1.6"
    finally:
        server.close()
        await server.wait_closed()
        await lag.stop()
