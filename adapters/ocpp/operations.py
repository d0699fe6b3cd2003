"""Remote operations as OCPP calls: one encoder per operation and protocol family.

Arguments are version-neutral (`evse_id`, `id_token`, ISO times with Z, Decimal limits); each
encoder makes the version's payload, which is then checked against the version's schema.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from domain.remote import Operation

Args = Mapping[str, Any]


@dataclass(frozen=True)
class OutboundCall:
    action: str
    payload: dict[str, Any]


class Unsupported(Exception):
    """The operation, or one of its arguments, has no equivalent in this protocol version."""


class InvalidRequest(Exception):
    """The arguments do not make a valid message of this protocol version."""


Encoder = Callable[[Args, int], OutboundCall]


def _present(**fields: Any) -> dict[str, Any]:
    """The fields that have a value: OCPP wants optional fields left out, not null."""
    return {name: value for name, value in fields.items() if value is not None}


def _no_component(args: Args, what: str) -> None:
    if args.get("component") is not None:
        raise Unsupported(f"OCPP 1.6 {what} has no components: give the key as `variable` alone")


def default_profile_id(args: Args) -> int:
    """Setting a limit again on the same EVSE replaces the previous one."""
    return int(args.get("profile_id") or args.get("evse_id", 0) + 1)


# --- OCPP 1.6: a connector id stands for the EVSE; 0 is the whole charge point ---------------


def _start16(a: Args, n: int) -> OutboundCall:
    return OutboundCall(
        "RemoteStartTransaction", _present(idTag=a["id_token"], connectorId=a.get("evse_id"))
    )


def _stop16(a: Args, n: int) -> OutboundCall:
    try:
        number = int(a["transaction_id"])
    except ValueError:
        raise InvalidRequest("OCPP 1.6 transaction ids are integers") from None
    return OutboundCall("RemoteStopTransaction", {"transactionId": number})


def _unlock16(a: Args, n: int) -> OutboundCall:
    return OutboundCall("UnlockConnector", {"connectorId": a["evse_id"]})


def _reset16(a: Args, n: int) -> OutboundCall:
    if a.get("evse_id") is not None:
        raise Unsupported("OCPP 1.6 resets the whole charge point, not one EVSE")
    return OutboundCall("Reset", {"type": a["kind"]})


def _availability16(a: Args, n: int) -> OutboundCall:
    kind = "Operative" if a["operative"] else "Inoperative"
    return OutboundCall("ChangeAvailability", {"connectorId": a["evse_id"], "type": kind})


def _get_configuration16(a: Args, n: int) -> OutboundCall:
    keys = a.get("keys") or []
    for key in keys:
        _no_component(key, "configuration")
    return OutboundCall("GetConfiguration", _present(key=[k["variable"] for k in keys] or None))


def _change_configuration16(a: Args, n: int) -> OutboundCall:
    _no_component(a, "configuration")
    return OutboundCall("ChangeConfiguration", {"key": a["variable"], "value": a["value"]})


def _trigger16(a: Args, n: int) -> OutboundCall:
    return OutboundCall(
        "TriggerMessage", _present(requestedMessage=a["message"], connectorId=a.get("evse_id"))
    )


def _firmware16(a: Args, n: int) -> OutboundCall:
    return OutboundCall(
        "UpdateFirmware",
        _present(
            location=a["location"],
            retrieveDate=a["retrieve_at"],
            retries=a.get("retries"),
            retryInterval=a.get("retry_interval"),
        ),
    )


def _diagnostics16(a: Args, n: int) -> OutboundCall:
    if a["log_type"] == "Security":
        return OutboundCall("GetLog", _get_log(a, n, "SecurityLog"))
    return OutboundCall(
        "GetDiagnostics",
        _present(location=a["upload_url"], startTime=a.get("from"), stopTime=a.get("to")),
    )


def _get_log(a: Args, n: int, log_type: str) -> dict[str, Any]:
    window = _present(
        remoteLocation=a["upload_url"], oldestTimestamp=a.get("from"), latestTimestamp=a.get("to")
    )
    return {"logType": log_type, "requestId": n, "log": window}


def _schedule16(a: Args) -> dict[str, Any]:
    period = {"startPeriod": 0, "limit": a["limit"]}
    return {"chargingRateUnit": a["unit"], "chargingSchedulePeriod": [period]}


def _set_limit16(a: Args, n: int) -> OutboundCall:
    profile = {
        "chargingProfileId": default_profile_id(a),
        "stackLevel": 0,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Relative",
        "chargingSchedule": _schedule16(a),
    }
    return OutboundCall(
        "SetChargingProfile", {"connectorId": a["evse_id"], "csChargingProfiles": profile}
    )


def _clear_limit16(a: Args, n: int) -> OutboundCall:
    if a.get("profile_id") is not None:
        return OutboundCall("ClearChargingProfile", {"id": a["profile_id"]})
    return OutboundCall(
        "ClearChargingProfile",
        _present(connectorId=a.get("evse_id"), chargingProfilePurpose="TxDefaultProfile"),
    )


def _composite16(a: Args, n: int) -> OutboundCall:
    return OutboundCall(
        "GetCompositeSchedule",
        _present(connectorId=a["evse_id"], duration=a["duration"], chargingRateUnit=a.get("unit")),
    )


def _reserve16(a: Args, n: int) -> OutboundCall:
    return OutboundCall(
        "ReserveNow",
        _present(
            connectorId=a.get("evse_id") or 0,
            expiryDate=a["expires_at"],
            idTag=a["id_token"],
            reservationId=a.get("reservation_id") or n,
            parentIdTag=a.get("parent_id_token"),
        ),
    )


def _cancel_reservation(a: Args, n: int) -> OutboundCall:
    return OutboundCall("CancelReservation", {"reservationId": a["reservation_id"]})


def _entry16(entry: Args) -> dict[str, Any]:
    if entry.get("status") is None:
        return {"idTag": entry["id_token"]}  # in a differential update: remove it
    info = _present(
        status=entry["status"],
        expiryDate=entry.get("expires_at"),
        parentIdTag=entry.get("parent_id_token"),
    )
    return {"idTag": entry["id_token"], "idTagInfo": info}


def _local_list16(a: Args, n: int) -> OutboundCall:
    return OutboundCall(
        "SendLocalList",
        {
            "listVersion": a["version"],
            "updateType": a["update_type"],
            "localAuthorizationList": [_entry16(e) for e in a["entries"]],
        },
    )


def _empty(action: str) -> Encoder:
    return lambda a, n: OutboundCall(action, {})


def _data_transfer(a: Args, n: int) -> OutboundCall:
    return OutboundCall(
        "DataTransfer",
        _present(vendorId=a["vendor_id"], messageId=a.get("message_id"), data=a.get("data")),
    )


ENCODERS_16: dict[Operation, Encoder] = {
    Operation.START_CHARGING: _start16,
    Operation.STOP_CHARGING: _stop16,
    Operation.UNLOCK_CONNECTOR: _unlock16,
    Operation.RESET: _reset16,
    Operation.CHANGE_AVAILABILITY: _availability16,
    Operation.GET_CONFIGURATION: _get_configuration16,
    Operation.CHANGE_CONFIGURATION: _change_configuration16,
    Operation.TRIGGER_MESSAGE: _trigger16,
    Operation.UPDATE_FIRMWARE: _firmware16,
    Operation.FETCH_DIAGNOSTICS: _diagnostics16,
    Operation.SET_CHARGING_LIMIT: _set_limit16,
    Operation.CLEAR_CHARGING_LIMIT: _clear_limit16,
    Operation.GET_COMPOSITE_SCHEDULE: _composite16,
    Operation.RESERVE: _reserve16,
    Operation.CANCEL_RESERVATION: _cancel_reservation,
    Operation.SEND_LOCAL_LIST: _local_list16,
    Operation.GET_LOCAL_LIST_VERSION: _empty("GetLocalListVersion"),
    Operation.CLEAR_CACHE: _empty("ClearCache"),
    Operation.DATA_TRANSFER: _data_transfer,
}


# --- OCPP 2.0.1 and 2.1: EVSEs with connectors, components and variables --------------------


def _token2(a: Args, prefix: str = "") -> dict[str, Any]:
    return {"idToken": a[f"{prefix}id_token"], "type": a.get(f"{prefix}token_type") or "Central"}


def _start2(a: Args, n: int) -> OutboundCall:
    return OutboundCall(
        "RequestStartTransaction",
        _present(idToken=_token2(a), remoteStartId=n, evseId=a.get("evse_id")),
    )


def _stop2(a: Args, n: int) -> OutboundCall:
    return OutboundCall("RequestStopTransaction", {"transactionId": a["transaction_id"]})


def _evse2(a: Args) -> dict[str, Any] | None:
    if not a.get("evse_id"):
        return None  # EVSE 0: the station as a whole
    return _present(id=a["evse_id"], connectorId=a.get("connector_id"))


def _unlock2(a: Args, n: int) -> OutboundCall:
    return OutboundCall(
        "UnlockConnector", {"evseId": a["evse_id"], "connectorId": a.get("connector_id") or 1}
    )


def _reset2(a: Args, n: int) -> OutboundCall:
    kind = "Immediate" if a["kind"] == "Hard" else "OnIdle"
    return OutboundCall("Reset", _present(type=kind, evseId=a.get("evse_id")))


def _availability2(a: Args, n: int) -> OutboundCall:
    status = "Operative" if a["operative"] else "Inoperative"
    return OutboundCall("ChangeAvailability", _present(operationalStatus=status, evse=_evse2(a)))


def _component(a: Args) -> dict[str, Any]:
    if a.get("component") is None:
        raise InvalidRequest("OCPP 2.x variables belong to a component: give `component`")
    evse = _evse2(a)
    return _present(name=a["component"], instance=a.get("component_instance"), evse=evse)


def _variable(a: Args) -> dict[str, Any]:
    return _present(name=a["variable"], instance=a.get("variable_instance"))


def _get_configuration2(a: Args, n: int) -> OutboundCall:
    keys = a.get("keys") or []
    if not keys:  # everything: the station reports it in NotifyReport messages
        return OutboundCall("GetBaseReport", {"requestId": n, "reportBase": "FullInventory"})
    data = [{"component": _component(k), "variable": _variable(k)} for k in keys]
    return OutboundCall("GetVariables", {"getVariableData": data})


def _change_configuration2(a: Args, n: int) -> OutboundCall:
    data = {"attributeValue": a["value"], "component": _component(a), "variable": _variable(a)}
    return OutboundCall("SetVariables", {"setVariableData": [data]})


def _trigger2(a: Args, n: int) -> OutboundCall:
    return OutboundCall("TriggerMessage", _present(requestedMessage=a["message"], evse=_evse2(a)))


def _firmware2(a: Args, n: int) -> OutboundCall:
    firmware = {"location": a["location"], "retrieveDateTime": a["retrieve_at"]}
    return OutboundCall(
        "UpdateFirmware",
        _present(
            requestId=n,
            firmware=firmware,
            retries=a.get("retries"),
            retryInterval=a.get("retry_interval"),
        ),
    )


def _diagnostics2(a: Args, n: int) -> OutboundCall:
    log_type = "SecurityLog" if a["log_type"] == "Security" else "DiagnosticsLog"
    return OutboundCall("GetLog", _get_log(a, n, log_type))


def _set_limit2(a: Args, n: int) -> OutboundCall:
    schedule = {
        "id": 1,
        "chargingRateUnit": a["unit"],
        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": a["limit"]}],
    }
    profile = {
        "id": default_profile_id(a),
        "stackLevel": 0,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Relative",
        "chargingSchedule": [schedule],
    }
    return OutboundCall("SetChargingProfile", {"evseId": a["evse_id"], "chargingProfile": profile})


def _clear_limit2(a: Args, n: int) -> OutboundCall:
    if a.get("profile_id") is not None:
        return OutboundCall("ClearChargingProfile", {"chargingProfileId": a["profile_id"]})
    criteria = _present(evseId=a.get("evse_id"), chargingProfilePurpose="TxDefaultProfile")
    return OutboundCall("ClearChargingProfile", {"chargingProfileCriteria": criteria})


def _composite2(a: Args, n: int) -> OutboundCall:
    return OutboundCall(
        "GetCompositeSchedule",
        _present(evseId=a["evse_id"], duration=a["duration"], chargingRateUnit=a.get("unit")),
    )


def _reserve2(a: Args, n: int) -> OutboundCall:
    return OutboundCall(
        "ReserveNow",
        _present(
            id=a.get("reservation_id") or n,
            expiryDateTime=a["expires_at"],
            idToken=_token2(a),
            evseId=a.get("evse_id") or None,
        ),
    )


def _entry2(entry: Args) -> dict[str, Any]:
    item: dict[str, Any] = {"idToken": _token2(entry)}
    if entry.get("status") is not None:
        group = entry.get("group_id_token")
        item["idTokenInfo"] = _present(
            status=entry["status"],
            cacheExpiryDateTime=entry.get("expires_at"),
            groupIdToken={"idToken": group, "type": "Central"} if group else None,
        )
    return item


def _local_list2(a: Args, n: int) -> OutboundCall:
    entries = [_entry2(e) for e in a["entries"]]
    return OutboundCall(
        "SendLocalList",
        _present(
            versionNumber=a["version"],
            updateType=a["update_type"],
            localAuthorizationList=entries or None,
        ),
    )


ENCODERS_2X: dict[Operation, Encoder] = {
    Operation.START_CHARGING: _start2,
    Operation.STOP_CHARGING: _stop2,
    Operation.UNLOCK_CONNECTOR: _unlock2,
    Operation.RESET: _reset2,
    Operation.CHANGE_AVAILABILITY: _availability2,
    Operation.GET_CONFIGURATION: _get_configuration2,
    Operation.CHANGE_CONFIGURATION: _change_configuration2,
    Operation.TRIGGER_MESSAGE: _trigger2,
    Operation.UPDATE_FIRMWARE: _firmware2,
    Operation.FETCH_DIAGNOSTICS: _diagnostics2,
    Operation.SET_CHARGING_LIMIT: _set_limit2,
    Operation.CLEAR_CHARGING_LIMIT: _clear_limit2,
    Operation.GET_COMPOSITE_SCHEDULE: _composite2,
    Operation.RESERVE: _reserve2,
    Operation.CANCEL_RESERVATION: _cancel_reservation,
    Operation.SEND_LOCAL_LIST: _local_list2,
    Operation.GET_LOCAL_LIST_VERSION: _empty("GetLocalListVersion"),
    Operation.CLEAR_CACHE: _empty("ClearCache"),
    Operation.DATA_TRANSFER: _data_transfer,
}


def answer_status(response: Mapping[str, Any]) -> str | None:
    """The station's one-word answer, where its message has one."""
    if isinstance(response.get("status"), str):
        return str(response["status"])
    results = response.get("setVariableResult") or []
    if results:
        return str(results[0]["attributeStatus"])
    return None
