"""OCPP 2.0.1: maps charging station messages to domain commands and answers them per spec.

2.0.1 names EVSEs and their connectors itself; EVSE 0 is the station as a whole. Transactions
are numbered by the station and told as numbered TransactionEvents.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from eventsourcing.domain import Aggregate
from ocpp.v201.enums import Action

from adapters.admission import Admission, admit_all
from adapters.ocpp.certificates import (
    EV_CONTRACT,
    OCSP_STATUS,
    SIGNING,
    STATUS_INFO,
    record_refusal,
)
from adapters.ocpp.common import CommonMessages, boot_answer
from adapters.ocpp.operations import ENCODERS_2X
from adapters.ocpp.times import format_time, parse_time
from adapters.ocpp.translator import Dispatcher, Handler, Inbound, Submit
from domain import commands as cmd
from domain.commands import BootResult, Command, TransactionEventResult
from domain.id_tokens import TokenDecision
from domain.meter import ENERGY_IMPORT_REGISTER, MeterReading, SampledValue
from domain.station import ChargingStation

# A connector's state, as a 2.1 station reports it (and a 2.0.1 one may) through NotifyEvent.
AVAILABILITY_STATE = "AvailabilityState"
CONNECTOR, STATION = "Connector", "ChargingStation"

# TransactionEvent fields that become command fields; the rest is kept verbatim as details.
_MAPPED = {"eventType", "timestamp", "triggerReason", "seqNo", "offline", "reservationId"}
_MAPPED |= {"evse", "idToken", "meterValue", "transactionInfo"}
_MAPPED_INFO = {"transactionId", "chargingState", "stoppedReason", "remoteStartId"}


def _number_text(value: Any) -> str:
    """A JSON number as the station wrote it (fractions arrive as Decimal, never as float)."""
    return str(value)


def _sampled_value(sampled: dict[str, Any]) -> SampledValue:
    measurand = sampled.get("measurand", ENERGY_IMPORT_REGISTER)
    unit_of_measure = sampled.get("unitOfMeasure") or {}
    default_unit = "Wh" if measurand.startswith("Energy") else None
    signed = sampled.get("signedMeterValue") or {}
    return SampledValue(
        value=_number_text(sampled["value"]),
        measurand=measurand,
        unit=unit_of_measure.get("unit", default_unit),
        phase=sampled.get("phase"),
        location=sampled.get("location"),
        context=sampled.get("context", "Sample.Periodic"),
        multiplier=unit_of_measure.get("multiplier"),
        signed_data=signed.get("signedMeterData"),
        signing_method=signed.get("signingMethod"),
        encoding_method=signed.get("encodingMethod"),
        public_key=signed.get("publicKey"),
    )


def readings(meter_values: Iterable[dict[str, Any]], message_id: str) -> list[dict[str, Any]]:
    """2.x meterValue entries as version-neutral reading records, defaults made explicit."""
    return [
        MeterReading(
            parse_time(entry["timestamp"], "meterValue.timestamp", message_id),
            tuple(_sampled_value(sampled) for sampled in entry["sampledValue"]),
        ).to_record()
        for entry in meter_values
    ]


def _component(component: dict[str, Any]) -> dict[str, Any]:
    evse = component.get("evse") or {}
    return {
        "component": component["name"],
        "component_instance": component.get("instance"),
        "evse_id": evse.get("id"),
        "connector_id": evse.get("connectorId"),
    }


def _variable(variable: dict[str, Any]) -> dict[str, Any]:
    return {"variable": variable["name"], "variable_instance": variable.get("instance")}


def _reported_variable(entry: dict[str, Any]) -> dict[str, Any]:
    attributes = [
        {
            "type": attribute.get("type", "Actual"),
            "value": attribute.get("value"),
            "mutability": attribute.get("mutability", "ReadWrite"),
            "persistent": attribute.get("persistent", False),
            "constant": attribute.get("constant", False),
        }
        for attribute in entry["variableAttribute"]
    ]
    return {
        **_component(entry["component"]),
        **_variable(entry["variable"]),
        "attributes": attributes,
        "characteristics": entry.get("variableCharacteristics"),
    }


def _variable_event(event: dict[str, Any], message_id: str) -> dict[str, Any]:
    return {
        **_component(event["component"]),
        **_variable(event["variable"]),
        "event_id": event["eventId"],
        "timestamp": parse_time(event["timestamp"], "eventData.timestamp", message_id),
        "trigger": event["trigger"],
        "cause": event.get("cause"),
        "actual_value": event["actualValue"],
        "tech_code": event.get("techCode"),
        "tech_info": event.get("techInfo"),
        "cleared": event.get("cleared", False),
        "transaction_key": event.get("transactionId"),
        "monitor_id": event.get("variableMonitoringId"),
        "notification_type": event["eventNotificationType"],
        "severity": event.get("severity"),
    }


def _connector_status(event: dict[str, Any], inbound: Inbound) -> Command[Any] | None:
    """A change of a connector's (or the station's) AvailabilityState, as a status change."""
    if event["variable"] != AVAILABILITY_STATE:
        return None
    if event["component"] == CONNECTOR and event["evse_id"] is not None:
        where = (event["evse_id"], event["connector_id"] or 1)
    elif event["component"] == STATION:
        where = (0, 0)
    else:
        return None
    return cmd.ChangeConnectorStatus(
        station_id=inbound.station_id,
        evse_id=where[0],
        connector_id=where[1],
        status=event["actual_value"],
        error_code=None,
        info=None,
        vendor_error_code=None,
        station_time=event["timestamp"],
        received_at=inbound.received_at,
    )


def id_token_info(decision: TokenDecision) -> dict[str, Any]:
    info: dict[str, Any] = {"status": decision.status.value}
    if decision.expires_at is not None:
        info["cacheExpiryDateTime"] = format_time(decision.expires_at)
    if decision.group_id_token is not None:
        info["groupIdToken"] = {"idToken": decision.group_id_token, "type": "Central"}
    return info


class OcppV201(Dispatcher, CommonMessages):
    version = "2.0.1"
    subprotocol = "ocpp2.0.1"
    known_actions = frozenset(action.value for action in Action)
    encoders = ENCODERS_2X
    charging_needs_answer = "Rejected"  # no smart charging yet: no schedule will follow

    def __init__(self, heartbeat_interval: int = 300, admission: Admission = admit_all) -> None:
        self.heartbeat_interval = heartbeat_interval
        self.admission = admission

    async def _report(
        self, inbound: Inbound, submit: Submit, fact: type[Aggregate.Event], **fields: Any
    ) -> dict[str, Any]:
        await submit(cmd.RecordStationReport(inbound.station_id, fact, fields, inbound.received_at))
        return {}

    def _time(self, inbound: Inbound, name: str) -> datetime:
        return parse_time(inbound.call.payload[name], name, inbound.call.message_id)

    async def boot_notification(self, inbound: Inbound, submit: Submit) -> dict[str, Any]:
        p = inbound.call.payload
        station = p["chargingStation"]
        result: BootResult = await submit(
            cmd.RecordBoot(
                station_id=inbound.station_id,
                vendor=station["vendorName"],
                model=station["model"],
                serial_number=station.get("serialNumber"),
                firmware_version=station.get("firmwareVersion"),
                reason=p["reason"],
                details=p,
                heartbeat_interval=self.heartbeat_interval,
                received_at=inbound.received_at,
                retry_after=self.admission(),
            )
        )
        return boot_answer(result)

    async def status_notification(self, inbound: Inbound, submit: Submit) -> dict[str, Any]:
        p = inbound.call.payload
        await submit(
            cmd.ChangeConnectorStatus(
                station_id=inbound.station_id,
                evse_id=p["evseId"],
                connector_id=p["connectorId"],
                status=p["connectorStatus"],
                error_code=None,  # 2.x reports problems through NotifyEvent
                info=None,
                vendor_error_code=None,
                station_time=self._time(inbound, "timestamp"),
                received_at=inbound.received_at,
            )
        )
        return {}

    async def authorize(self, inbound: Inbound, submit: Submit) -> dict[str, Any]:
        token = inbound.call.payload["idToken"]
        # A contract certificate sent along is not checked: no certificateStatus is claimed.
        decision = await submit(
            cmd.AuthorizeIdToken(
                inbound.station_id, token["idToken"], token["type"], inbound.received_at
            )
        )
        return {"idTokenInfo": id_token_info(decision)}

    async def transaction_event(self, inbound: Inbound, submit: Submit) -> dict[str, Any]:
        p = inbound.call.payload
        info = p["transactionInfo"]
        evse = p.get("evse") or {}
        token = p.get("idToken")
        details = {k: v for k, v in p.items() if k not in _MAPPED}
        extra_info = {k: v for k, v in info.items() if k not in _MAPPED_INFO}
        if extra_info:
            details["transactionInfo"] = extra_info
        result: TransactionEventResult = await submit(
            cmd.RecordTransactionEvent(
                station_id=inbound.station_id,
                transaction_key=info["transactionId"],
                seq_no=p["seqNo"],
                kind=p["eventType"],
                station_time=self._time(inbound, "timestamp"),
                trigger_reason=p["triggerReason"],
                offline=p.get("offline", False),
                evse_id=evse.get("id"),
                connector_id=evse.get("connectorId"),
                id_token=token["idToken"] if token else None,
                token_type=token["type"] if token else None,
                charging_state=info.get("chargingState"),
                stop_reason=info.get("stoppedReason"),
                remote_start_id=info.get("remoteStartId"),
                reservation_id=p.get("reservationId"),
                readings=readings(p.get("meterValue", []), inbound.call.message_id),
                details=details,
                received_at=inbound.received_at,
            )
        )
        if result.id_token is None:
            return {}
        return {"idTokenInfo": id_token_info(result.id_token)}

    async def meter_values(self, inbound: Inbound, submit: Submit) -> dict[str, Any]:
        p = inbound.call.payload
        await submit(
            cmd.RecordMeterValues(
                station_id=inbound.station_id,
                evse_id=p["evseId"],
                connector_id=None,
                transaction_key=None,  # transaction readings come inside TransactionEvent
                readings=readings(p["meterValue"], inbound.call.message_id),
                received_at=inbound.received_at,
            )
        )
        return {}

    async def notify_report(self, inbound: Inbound, submit: Submit) -> dict[str, Any]:
        p = inbound.call.payload
        return await self._report(
            inbound,
            submit,
            ChargingStation.VariablesReported,
            request_id=p["requestId"],
            generated_at=self._time(inbound, "generatedAt"),
            seq_no=p["seqNo"],
            more_to_follow=p.get("tbc", False),
            variables=[_reported_variable(entry) for entry in p.get("reportData", [])],
        )

    async def notify_event(self, inbound: Inbound, submit: Submit) -> dict[str, Any]:
        p = inbound.call.payload
        events = [_variable_event(e, inbound.call.message_id) for e in p["eventData"]]
        report = cmd.RecordStationReport(
            inbound.station_id,
            ChargingStation.VariableEventsReported,
            {
                "generated_at": self._time(inbound, "generatedAt"),
                "seq_no": p["seqNo"],
                "more_to_follow": p.get("tbc", False),
                "events": events,
            },
            inbound.received_at,
        )
        statuses = [c for c in (_connector_status(e, inbound) for e in events) if c is not None]
        await submit(cmd.AllOf(inbound.station_id, (report, *statuses)))
        return {}

    async def notify_monitoring_report(self, inbound: Inbound, submit: Submit) -> dict[str, Any]:
        p = inbound.call.payload
        return await self._report(
            inbound,
            submit,
            ChargingStation.MonitoringReported,
            request_id=p["requestId"],
            generated_at=self._time(inbound, "generatedAt"),
            seq_no=p["seqNo"],
            more_to_follow=p.get("tbc", False),
            monitors=p.get("monitor", []),
        )

    async def notify_customer_information(self, inbound: Inbound, submit: Submit) -> dict[str, Any]:
        p = inbound.call.payload
        return await self._report(
            inbound,
            submit,
            ChargingStation.CustomerInformationReported,
            request_id=p["requestId"],
            generated_at=self._time(inbound, "generatedAt"),
            seq_no=p["seqNo"],
            more_to_follow=p.get("tbc", False),
            data=p["data"],
        )

    async def notify_display_messages(self, inbound: Inbound, submit: Submit) -> dict[str, Any]:
        p = inbound.call.payload
        return await self._report(
            inbound,
            submit,
            ChargingStation.DisplayMessagesReported,
            request_id=p["requestId"],
            more_to_follow=p.get("tbc", False),
            messages=p.get("messageInfo", []),
        )

    async def notify_charging_limit(self, inbound: Inbound, submit: Submit) -> dict[str, Any]:
        p = inbound.call.payload
        limit = p["chargingLimit"]
        return await self._report(
            inbound,
            submit,
            ChargingStation.ChargingLimitReported,
            source=limit["chargingLimitSource"],
            evse_id=p.get("evseId"),
            grid_critical=limit.get("isGridCritical"),
            details=p,
        )

    async def cleared_charging_limit(self, inbound: Inbound, submit: Submit) -> dict[str, Any]:
        p = inbound.call.payload
        return await self._report(
            inbound,
            submit,
            ChargingStation.ChargingLimitCleared,
            source=p["chargingLimitSource"],
            evse_id=p.get("evseId"),
        )

    async def report_charging_profiles(self, inbound: Inbound, submit: Submit) -> dict[str, Any]:
        p = inbound.call.payload
        return await self._report(
            inbound,
            submit,
            ChargingStation.ChargingProfilesReported,
            request_id=p["requestId"],
            source=p["chargingLimitSource"],
            evse_id=p["evseId"],
            more_to_follow=p.get("tbc", False),
            profiles=p["chargingProfile"],
        )

    async def notify_ev_charging_needs(self, inbound: Inbound, submit: Submit) -> dict[str, Any]:
        p = inbound.call.payload
        answer = self.charging_needs_answer
        needs = {k: v for k, v in p.items() if k != "evseId"}
        await self._report(
            inbound,
            submit,
            ChargingStation.EVChargingNeedsReported,
            evse_id=p["evseId"],
            needs=needs,
            answer=answer,
        )
        return {"status": answer}

    async def notify_ev_charging_schedule(self, inbound: Inbound, submit: Submit) -> dict[str, Any]:
        p = inbound.call.payload
        answer = "Accepted"  # the CSMS set no limit the EV's schedule could exceed
        await self._report(
            inbound,
            submit,
            ChargingStation.EVChargingScheduleReported,
            evse_id=p["evseId"],
            time_base=self._time(inbound, "timeBase"),
            schedule=p["chargingSchedule"],
            answer=answer,
        )
        return {"status": answer}

    async def reservation_status_update(self, inbound: Inbound, submit: Submit) -> dict[str, Any]:
        p = inbound.call.payload
        return await self._report(
            inbound,
            submit,
            ChargingStation.ReservationStatusReported,
            reservation_id=p["reservationId"],
            status=p["reservationUpdateStatus"],
        )

    async def publish_firmware_status(self, inbound: Inbound, submit: Submit) -> dict[str, Any]:
        p = inbound.call.payload
        return await self._report(
            inbound,
            submit,
            ChargingStation.FirmwarePublicationStatusReported,
            status=p["status"],
            request_id=p.get("requestId"),
            locations=p.get("location", []),
        )

    async def firmware_status(self, inbound: Inbound, submit: Submit) -> dict[str, Any]:
        p = inbound.call.payload
        await submit(
            cmd.RecordFirmwareStatus(
                inbound.station_id, p["status"], p.get("requestId"), False, inbound.received_at
            )
        )
        return {}

    async def sign_certificate(self, inbound: Inbound, submit: Submit) -> dict[str, Any]:
        await record_refusal(inbound, submit, SIGNING, "Rejected")
        return {"status": "Rejected", "statusInfo": STATUS_INFO}

    async def get_15118_ev_certificate(self, inbound: Inbound, submit: Submit) -> dict[str, Any]:
        await record_refusal(inbound, submit, EV_CONTRACT, "Failed")
        return {"status": "Failed", "statusInfo": STATUS_INFO, "exiResponse": ""}

    async def get_certificate_status(self, inbound: Inbound, submit: Submit) -> dict[str, Any]:
        await record_refusal(inbound, submit, OCSP_STATUS, "Failed")
        return {"status": "Failed", "statusInfo": STATUS_INFO}


HANDLERS_V201: dict[str, Handler] = {
    "Authorize": OcppV201.authorize,
    "BootNotification": OcppV201.boot_notification,
    "ClearedChargingLimit": OcppV201.cleared_charging_limit,
    "DataTransfer": OcppV201.data_transfer,
    "FirmwareStatusNotification": OcppV201.firmware_status,
    "Get15118EVCertificate": OcppV201.get_15118_ev_certificate,
    "GetCertificateStatus": OcppV201.get_certificate_status,
    "Heartbeat": OcppV201.heartbeat,
    "LogStatusNotification": OcppV201.log_status,
    "MeterValues": OcppV201.meter_values,
    "NotifyChargingLimit": OcppV201.notify_charging_limit,
    "NotifyCustomerInformation": OcppV201.notify_customer_information,
    "NotifyDisplayMessages": OcppV201.notify_display_messages,
    "NotifyEVChargingNeeds": OcppV201.notify_ev_charging_needs,
    "NotifyEVChargingSchedule": OcppV201.notify_ev_charging_schedule,
    "NotifyEvent": OcppV201.notify_event,
    "NotifyMonitoringReport": OcppV201.notify_monitoring_report,
    "NotifyReport": OcppV201.notify_report,
    "PublishFirmwareStatusNotification": OcppV201.publish_firmware_status,
    "ReportChargingProfiles": OcppV201.report_charging_profiles,
    "ReservationStatusUpdate": OcppV201.reservation_status_update,
    "SecurityEventNotification": OcppV201.security_event,
    "SignCertificate": OcppV201.sign_certificate,
    "StatusNotification": OcppV201.status_notification,
    "TransactionEvent": OcppV201.transaction_event,
}
OcppV201.handlers = HANDLERS_V201
