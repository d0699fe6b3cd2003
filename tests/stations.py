"""Real OCPP station clients (the `ocpp` package, charge point role), one per protocol version,
behind one small interface, so a scenario is written once and run for 1.6, 2.0.1 and 2.1.

Each speaks its protocol as a real station would: a 1.6 station gets its transaction number from
the CSMS; a 2.x station names its transactions itself and numbers their events.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from types import ModuleType
from typing import Any, Protocol

import websockets
from ocpp.charge_point import ChargePoint
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call as call16
from ocpp.v21 import ChargePoint as ChargePoint21
from ocpp.v21 import call as call21
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call as call201

from tests.support import ServerProcess, offer

VERSIONS = ("ocpp1.6", "ocpp2.0.1", "ocpp2.1")


class Station(Protocol):
    protocol: str
    station_connectors: tuple[tuple[int, int], ...]  # what it reports at boot, (evse, connector)

    async def boot(self, vendor: str, model: str, serial: str, firmware: str) -> str: ...
    async def heartbeat(self) -> str: ...
    async def status(self, evse: int, connector: int, status: str, at: str) -> None: ...
    async def authorize(self, token: str) -> str: ...
    async def start(self, evse: int, token: str, meter_wh: int, at: str) -> str: ...
    async def meter(self, tx: str, evse: int, at: str, value: str, unit: str) -> None: ...
    async def stop(
        self, tx: str, evse: int, meter_wh: int, at: str, reason: str, token: str | None
    ) -> None: ...
    async def firmware_status(self, status: str) -> None: ...
    async def log_status(self, status: str, request_id: int) -> None: ...
    async def data_transfer(self, vendor_id: str, message_id: str, data: str) -> str: ...
    async def security_event(self, kind: str, info: str, at: str) -> None: ...
    async def send(self, request: Any) -> Any: ...
    async def resend(self) -> Any: ...


def energy(at: str, value: str, unit: str = "Wh") -> dict[str, Any]:
    """A 1.6 meterValue: an energy register and a power reading."""
    return {
        "timestamp": at,
        "sampledValue": [
            {"value": value, "measurand": "Energy.Active.Import.Register", "unit": unit},
            {"value": "11.2", "measurand": "Power.Active.Import", "unit": "kW"},
        ],
    }


def energy2(at: str, value: float, unit: str = "Wh", context: str | None = None) -> dict[str, Any]:
    """A 2.x meterValue: numbers, a unit of measure, an optional reading context."""
    register: dict[str, Any] = {
        "value": value,
        "measurand": "Energy.Active.Import.Register",
        "unitOfMeasure": {"unit": unit},
    }
    if context:
        register["context"] = context
    power = {"value": 11.2, "measurand": "Power.Active.Import", "unitOfMeasure": {"unit": "kW"}}
    return {"timestamp": at, "sampledValue": [register, power]}


class Client:
    """Remembers the last request, so a test can resend it as a station does after a reconnect."""

    def __init__(self, client: ChargePoint) -> None:
        self.client = client
        self.last: Any = None

    async def send(self, request: Any) -> Any:
        self.last = request
        return await self.client.call(request, suppress=False)

    async def resend(self) -> Any:
        return await self.send(self.last)


class Station16(Client):
    protocol = "ocpp1.6"
    station_connectors = ((0, 0), (1, 1), (2, 1))

    async def boot(self, vendor: str, model: str, serial: str, firmware: str) -> str:
        answer = await self.send(
            call16.BootNotification(
                charge_point_vendor=vendor,
                charge_point_model=model,
                charge_point_serial_number=serial,
                firmware_version=firmware,
            )
        )
        assert answer.interval > 0 and answer.current_time.endswith("Z")
        return str(answer.status)

    async def heartbeat(self) -> str:
        return str((await self.send(call16.Heartbeat())).current_time)

    async def status(self, evse: int, connector: int, status: str, at: str) -> None:
        """`Occupied` in 1.6 words is one of several states; charging is the common one."""
        status = "Charging" if status == "Occupied" else status
        await self.send(
            call16.StatusNotification(
                connector_id=evse, error_code="NoError", status=status, timestamp=at
            )
        )

    async def authorize(self, token: str) -> str:
        return str((await self.send(call16.Authorize(id_tag=token))).id_tag_info["status"])

    async def start(self, evse: int, token: str, meter_wh: int, at: str) -> str:
        answer = await self.send(
            call16.StartTransaction(
                connector_id=evse, id_tag=token, meter_start=meter_wh, timestamp=at
            )
        )
        assert isinstance(answer.transaction_id, int)
        return str(answer.transaction_id)

    async def meter(self, tx: str, evse: int, at: str, value: str, unit: str) -> None:
        await self.send(
            call16.MeterValues(
                connector_id=evse, transaction_id=int(tx), meter_value=[energy(at, value, unit)]
            )
        )

    async def stop(
        self, tx: str, evse: int, meter_wh: int, at: str, reason: str, token: str | None
    ) -> None:
        answer = await self.send(
            call16.StopTransaction(
                meter_stop=meter_wh,
                timestamp=at,
                transaction_id=int(tx),
                id_tag=token,
                reason=reason,
                transaction_data=[energy(at, str(meter_wh))],
            )
        )
        if token:
            assert answer.id_tag_info["status"] == "Accepted"

    async def firmware_status(self, status: str) -> None:
        await self.send(call16.FirmwareStatusNotification(status="Idle"))
        await self.send(call16.SignedFirmwareStatusNotification(status=status, request_id=8))

    async def log_status(self, status: str, request_id: int) -> None:
        await self.send(call16.DiagnosticsStatusNotification(status="Idle"))
        await self.send(call16.LogStatusNotification(status=status, request_id=request_id))

    async def data_transfer(self, vendor_id: str, message_id: str, data: str) -> str:
        answer = await self.send(
            call16.DataTransfer(vendor_id=vendor_id, message_id=message_id, data=data)
        )
        return str(answer.status)

    async def security_event(self, kind: str, info: str, at: str) -> None:
        await self.send(call16.SecurityEventNotification(type=kind, tech_info=info, timestamp=at))


class Station2x(Client):
    """A 2.0.1 or 2.1 station: they differ here only in their schemas."""

    station_connectors = ((1, 1), (2, 1))

    def __init__(self, client: ChargePoint, protocol: str, calls: ModuleType) -> None:
        super().__init__(client)
        self.protocol = protocol
        self.call = calls
        self.seq: dict[str, int] = {}

    async def boot(self, vendor: str, model: str, serial: str, firmware: str) -> str:
        station = {
            "vendorName": vendor,
            "model": model,
            "serialNumber": serial,
            "firmwareVersion": firmware,
        }
        answer = await self.send(
            self.call.BootNotification(charging_station=station, reason="PowerUp")
        )
        assert answer.interval > 0 and answer.current_time.endswith("Z")
        return str(answer.status)

    async def heartbeat(self) -> str:
        return str((await self.send(self.call.Heartbeat())).current_time)

    async def status(self, evse: int, connector: int, status: str, at: str) -> None:
        await self.send(
            self.call.StatusNotification(
                timestamp=at, connector_status=status, evse_id=evse, connector_id=connector
            )
        )

    async def authorize(self, token: str) -> str:
        answer = await self.send(
            self.call.Authorize(id_token={"idToken": token, "type": "ISO14443"})
        )
        return str(answer.id_token_info["status"])

    async def transaction_event(self, tx: str, kind: str, **fields: Any) -> Any:
        """Sends the next event of transaction `tx`, numbered from 0."""
        seq_no = self.seq.get(tx, -1) + 1
        self.seq[tx] = seq_no
        info = {"transactionId": tx, **fields.pop("info", {})}
        return await self.send(
            self.call.TransactionEvent(
                event_type=kind, seq_no=seq_no, transaction_info=info, **fields
            )
        )

    async def start(self, evse: int, token: str, meter_wh: int, at: str) -> str:
        tx = f"TX-{evse}-{at}"  # the same start sent again names the same transaction
        self.seq.pop(tx, None)
        answer = await self.transaction_event(
            tx,
            "Started",
            timestamp=at,
            trigger_reason="Authorized",
            evse={"id": evse, "connectorId": 1},
            id_token={"idToken": token, "type": "ISO14443"},
            meter_value=[energy2(at, meter_wh, context="Transaction.Begin")],
            info={"chargingState": "Charging"},
        )
        assert answer.id_token_info == {"status": "Accepted"}
        return tx

    async def meter(self, tx: str, evse: int, at: str, value: str, unit: str) -> None:
        await self.transaction_event(
            tx,
            "Updated",
            timestamp=at,
            trigger_reason="MeterValuePeriodic",
            meter_value=[energy2(at, float(value), unit)],
        )

    async def stop(
        self, tx: str, evse: int, meter_wh: int, at: str, reason: str, token: str | None
    ) -> None:
        fields: dict[str, Any] = {}
        if token:
            fields["id_token"] = {"idToken": token, "type": "ISO14443"}
        await self.transaction_event(
            tx,
            "Ended",
            timestamp=at,
            trigger_reason="EVCommunicationLost",
            meter_value=[energy2(at, meter_wh, context="Transaction.End")],
            info={"stoppedReason": reason, "chargingState": "Idle"},
            **fields,
        )

    async def firmware_status(self, status: str) -> None:
        await self.send(self.call.FirmwareStatusNotification(status=status, request_id=8))

    async def log_status(self, status: str, request_id: int) -> None:
        await self.send(self.call.LogStatusNotification(status=status, request_id=request_id))

    async def data_transfer(self, vendor_id: str, message_id: str, data: str) -> str:
        answer = await self.send(
            self.call.DataTransfer(vendor_id=vendor_id, message_id=message_id, data=data)
        )
        return str(answer.status)

    async def security_event(self, kind: str, info: str, at: str) -> None:
        await self.send(
            self.call.SecurityEventNotification(type=kind, tech_info=info, timestamp=at)
        )


_CLIENTS: dict[str, type[ChargePoint]] = {
    "ocpp1.6": ChargePoint16,
    "ocpp2.0.1": ChargePoint201,
    "ocpp2.1": ChargePoint21,
}
_CALLS = {"ocpp2.0.1": call201, "ocpp2.1": call21}


@contextlib.asynccontextmanager
async def connect(server: ServerProcess, station_id: str, protocol: str) -> AsyncIterator[Any]:
    """A station of that protocol version connected to the server, with its client running."""
    async with websockets.connect(
        server.ocpp_url(station_id),
        subprotocols=offer(protocol),
    ) as ws:
        client = _CLIENTS[protocol](station_id, ws, response_timeout=15)
        task = asyncio.create_task(client.start())
        try:
            if protocol == "ocpp1.6":
                yield Station16(client)
            else:
                yield Station2x(client, protocol, _CALLS[protocol])
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
