"""OCPP 1.6J: maps charge point messages to domain commands and answers them per spec.

In 1.6 a connector is an EVSE with one connector; connector 0 is the charge point itself.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ocpp.v16.enums import Action

from adapters.admission import Admission, admit_all
from adapters.ocpp.certificates import refuse_signing
from adapters.ocpp.common import CommonMessages, boot_answer
from adapters.ocpp.operations import ENCODERS_16
from adapters.ocpp.times import format_time, parse_time
from adapters.ocpp.translator import Dispatcher, Inbound, Submit
from domain import commands as cmd
from domain.commands import BootResult, StartResult
from domain.id_tokens import TokenDecision, TokenStatus
from domain.meter import MeterReading, SampledValue


def _evse(connector_id: int) -> tuple[int, int]:
    return (connector_id, 1) if connector_id > 0 else (0, 0)


def _id_tag_info(decision: TokenDecision | None) -> dict[str, Any]:
    """1.6 idTagInfo; 1.6 has no word for an unknown token but Invalid."""
    if decision is None:
        return {"idTagInfo": {"status": "Accepted"}}
    status = "Invalid" if decision.status is TokenStatus.UNKNOWN else decision.status.value
    info: dict[str, Any] = {"status": status}
    if decision.expires_at is not None:
        info["expiryDate"] = format_time(decision.expires_at)
    if decision.parent_id_token is not None:
        info["parentIdTag"] = decision.parent_id_token
    return {"idTagInfo": info}


def readings(meter_values: list[dict[str, Any]], message_id: str) -> list[dict[str, Any]]:
    """1.6 meterValue entries as version-neutral reading records, 1.6 defaults made explicit."""
    records = []
    for entry in meter_values:
        values = []
        for sampled in entry["sampledValue"]:
            signed = sampled.get("format") == "SignedData"
            values.append(
                SampledValue(
                    value=sampled["value"],
                    measurand=sampled.get("measurand", "Energy.Active.Import.Register"),
                    unit=sampled.get("unit", "Wh"),
                    phase=sampled.get("phase"),
                    location=sampled.get("location"),
                    context=sampled.get("context", "Sample.Periodic"),
                    signed_data=sampled["value"] if signed else None,
                )
            )
        timestamp = parse_time(entry["timestamp"], "meterValue.timestamp", message_id)
        records.append(MeterReading(timestamp, tuple(values)).to_record())
    return records


class OcppV16(Dispatcher, CommonMessages):
    version = "1.6"
    subprotocol = "ocpp1.6"
    known_actions = frozenset(action.value for action in Action)
    encoders = ENCODERS_16

    def __init__(self, heartbeat_interval: int = 300, admission: Admission = admit_all) -> None:
        self.heartbeat_interval = heartbeat_interval
        self.admission = admission

    async def boot_notification(self, inbound: Inbound, submit: Submit) -> dict[str, Any]:
        p = inbound.call.payload
        result: BootResult = await submit(
            cmd.RecordBoot(
                station_id=inbound.station_id,
                vendor=p["chargePointVendor"],
                model=p["chargePointModel"],
                serial_number=p.get("chargePointSerialNumber") or p.get("chargeBoxSerialNumber"),
                firmware_version=p.get("firmwareVersion"),
                reason=None,
                details=p,
                heartbeat_interval=self.heartbeat_interval,
                received_at=inbound.received_at,
                retry_after=self.admission(),
            )
        )
        return boot_answer(result)

    async def status_notification(self, inbound: Inbound, submit: Submit) -> dict[str, Any]:
        p = inbound.call.payload
        message_id = inbound.call.message_id
        evse_id, connector_id = _evse(p["connectorId"])
        reported = p.get("timestamp")
        await submit(
            cmd.ChangeConnectorStatus(
                station_id=inbound.station_id,
                evse_id=evse_id,
                connector_id=connector_id,
                status=p["status"],
                error_code=None if p["errorCode"] == "NoError" else p["errorCode"],
                info=p.get("info"),
                vendor_error_code=p.get("vendorErrorCode"),
                station_time=parse_time(reported, "timestamp", message_id) if reported else None,
                received_at=inbound.received_at,
            )
        )
        return {}

    async def authorize(self, inbound: Inbound, submit: Submit) -> dict[str, Any]:
        decision = await submit(
            cmd.AuthorizeIdToken(
                inbound.station_id, inbound.call.payload["idTag"], None, inbound.received_at
            )
        )
        return _id_tag_info(decision)

    async def start_transaction(self, inbound: Inbound, submit: Submit) -> dict[str, Any]:
        p = inbound.call.payload
        evse_id, connector_id = _evse(p["connectorId"])
        fingerprint = hashlib.sha256(json.dumps(p, sort_keys=True).encode()).hexdigest()
        result: StartResult = await submit(
            cmd.StartTransaction(
                station_id=inbound.station_id,
                fingerprint=fingerprint,
                evse_id=evse_id,
                connector_id=connector_id,
                id_token=p["idTag"],
                meter_start_wh=p["meterStart"],
                started_at=parse_time(p["timestamp"], "timestamp", inbound.call.message_id),
                reservation_id=p.get("reservationId"),
                readings=[],
                received_at=inbound.received_at,
            )
        )
        return {
            "transactionId": int(result.transaction_key),
            **_id_tag_info(result.id_token),
        }

    async def stop_transaction(self, inbound: Inbound, submit: Submit) -> dict[str, Any]:
        p = inbound.call.payload
        message_id = inbound.call.message_id
        await submit(
            cmd.StopTransaction(
                station_id=inbound.station_id,
                transaction_key=str(p["transactionId"]),
                stopped_at=parse_time(p["timestamp"], "timestamp", message_id),
                meter_stop_wh=p["meterStop"],
                reason=p.get("reason", "Local"),
                id_token=p.get("idTag"),
                readings=readings(p.get("transactionData", []), message_id),
                received_at=inbound.received_at,
            )
        )
        # The station must be able to empty its queue: even an unknown transaction is answered.
        return _id_tag_info(None) if "idTag" in p else {}

    async def meter_values(self, inbound: Inbound, submit: Submit) -> dict[str, Any]:
        p = inbound.call.payload
        evse_id, connector_id = _evse(p["connectorId"])
        transaction_id = p.get("transactionId")
        await submit(
            cmd.RecordMeterValues(
                station_id=inbound.station_id,
                evse_id=evse_id,
                connector_id=connector_id if evse_id else None,
                transaction_key=None if transaction_id is None else str(transaction_id),
                readings=readings(p["meterValue"], inbound.call.message_id),
                received_at=inbound.received_at,
            )
        )
        return {}

    async def diagnostics_status(self, inbound: Inbound, submit: Submit) -> dict[str, Any]:
        await submit(
            cmd.RecordLogUploadStatus(
                inbound.station_id,
                inbound.call.payload["status"],
                None,
                "diagnostics",
                inbound.received_at,
            )
        )
        return {}

    async def firmware_status(self, inbound: Inbound, submit: Submit) -> dict[str, Any]:
        p = inbound.call.payload
        signed = inbound.call.action == Action.signed_firmware_status_notification.value
        await submit(
            cmd.RecordFirmwareStatus(
                inbound.station_id, p["status"], p.get("requestId"), signed, inbound.received_at
            )
        )
        return {}

    async def sign_certificate(self, inbound: Inbound, submit: Submit) -> dict[str, Any]:
        return await refuse_signing(inbound, submit)


OcppV16.handlers = {
    Action.authorize.value: OcppV16.authorize,
    Action.boot_notification.value: OcppV16.boot_notification,
    Action.data_transfer.value: OcppV16.data_transfer,
    Action.diagnostics_status_notification.value: OcppV16.diagnostics_status,
    Action.firmware_status_notification.value: OcppV16.firmware_status,
    Action.heartbeat.value: OcppV16.heartbeat,
    Action.meter_values.value: OcppV16.meter_values,
    Action.start_transaction.value: OcppV16.start_transaction,
    Action.status_notification.value: OcppV16.status_notification,
    Action.stop_transaction.value: OcppV16.stop_transaction,
    Action.security_event_notification.value: OcppV16.security_event,
    Action.log_status_notification.value: OcppV16.log_status,
    Action.signed_firmware_status_notification.value: OcppV16.firmware_status,
    Action.sign_certificate.value: OcppV16.sign_certificate,
}
