"""A bare OCPP-J server built on the `ocpp` package alone: it answers every message a simulated
station sends (1.6 and 2.0.1), validating it as the package does, and stores nothing.

It is the reference for what our whole pipeline costs: the same load against it and against the
CSMS gives the ratio.

    python -m bench.bare_server --port 9100
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
from datetime import UTC, datetime
from typing import Any

import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call_result as result16
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call_result as result201

_transaction_ids = itertools.count(1)


def _now() -> str:
    return datetime.now(UTC).isoformat()


class Station16(ChargePoint16):  # type: ignore[misc]
    @on("BootNotification")
    async def boot(self, **_: Any) -> Any:
        return result16.BootNotification(current_time=_now(), interval=300, status="Accepted")

    @on("Heartbeat")
    async def heartbeat(self, **_: Any) -> Any:
        return result16.Heartbeat(current_time=_now())

    @on("StatusNotification")
    async def status(self, **_: Any) -> Any:
        return result16.StatusNotification()

    @on("MeterValues")
    async def meter_values(self, **_: Any) -> Any:
        return result16.MeterValues()

    @on("StartTransaction")
    async def start_transaction(self, **_: Any) -> Any:
        return result16.StartTransaction(
            transaction_id=next(_transaction_ids), id_tag_info={"status": "Accepted"}
        )

    @on("StopTransaction")
    async def stop_transaction(self, **_: Any) -> Any:
        return result16.StopTransaction()

    @on("Authorize")
    async def authorize(self, **_: Any) -> Any:
        return result16.Authorize(id_tag_info={"status": "Accepted"})


class Station201(ChargePoint201):  # type: ignore[misc]
    @on("BootNotification")
    async def boot(self, **_: Any) -> Any:
        return result201.BootNotification(current_time=_now(), interval=300, status="Accepted")

    @on("Heartbeat")
    async def heartbeat(self, **_: Any) -> Any:
        return result201.Heartbeat(current_time=_now())

    @on("StatusNotification")
    async def status(self, **_: Any) -> Any:
        return result201.StatusNotification()

    @on("MeterValues")
    async def meter_values(self, **_: Any) -> Any:
        return result201.MeterValues()

    @on("TransactionEvent")
    async def transaction_event(self, **_: Any) -> Any:
        return result201.TransactionEvent()

    @on("Authorize")
    async def authorize(self, **_: Any) -> Any:
        return result201.Authorize(id_token_info={"status": "Accepted"})


async def _serve_station(connection: Any) -> None:
    station_id = connection.request.path.strip("/")
    station_class = Station16 if connection.subprotocol == "ocpp1.6" else Station201
    with contextlib.suppress(websockets.ConnectionClosed):
        await station_class(station_id, connection).start()


async def serve(host: str, port: int) -> None:
    async with websockets.serve(
        _serve_station,
        host,
        port,
        subprotocols=["ocpp2.0.1", "ocpp1.6"],  # type: ignore[list-item]
        compression=None,
        backlog=4096,
    ) as server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
