"""Handlers for messages whose payload is the same in every OCPP version."""

from __future__ import annotations

from typing import Any

from adapters.ocpp.times import format_time, now, parse_time
from adapters.ocpp.translator import Inbound, Submit
from domain import commands as cmd
from domain.commands import BootResult


def boot_answer(result: BootResult) -> dict[str, Any]:
    """The BootNotification answer, the same three fields in every version."""
    return {
        "status": result.registration_status,
        "currentTime": format_time(now()),
        "interval": result.heartbeat_interval,
    }


class CommonMessages:
    async def heartbeat(self, inbound: Inbound, submit: Submit) -> dict[str, Any]:
        return {"currentTime": format_time(now())}

    async def data_transfer(self, inbound: Inbound, submit: Submit) -> dict[str, Any]:
        p = inbound.call.payload
        status = await submit(
            cmd.ReceiveDataTransfer(
                inbound.station_id,
                p["vendorId"],
                p.get("messageId"),
                p.get("data"),
                inbound.received_at,
            )
        )
        return {"status": status}

    async def log_status(self, inbound: Inbound, submit: Submit) -> dict[str, Any]:
        p = inbound.call.payload
        await submit(
            cmd.RecordLogUploadStatus(
                inbound.station_id, p["status"], p.get("requestId"), "log", inbound.received_at
            )
        )
        return {}

    async def security_event(self, inbound: Inbound, submit: Submit) -> dict[str, Any]:
        p = inbound.call.payload
        await submit(
            cmd.RecordSecurityEvent(
                station_id=inbound.station_id,
                event_type=p["type"],
                tech_info=p.get("techInfo"),
                station_time=parse_time(p["timestamp"], "timestamp", inbound.call.message_id),
                received_at=inbound.received_at,
            )
        )
        return {}
