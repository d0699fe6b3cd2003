"""Remote commands: an operator's request to a station, and what became of it.

A command is its own aggregate, so the node that asked and the node that holds the station's
connection can both write to it; optimistic concurrency decides who settles it first.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate


class Operation(StrEnum):
    """What an operator can ask of a station, in every protocol version's terms."""

    START_CHARGING = "StartCharging"
    STOP_CHARGING = "StopCharging"
    UNLOCK_CONNECTOR = "UnlockConnector"
    RESET = "Reset"
    CHANGE_AVAILABILITY = "ChangeAvailability"
    GET_CONFIGURATION = "GetConfiguration"
    CHANGE_CONFIGURATION = "ChangeConfiguration"
    TRIGGER_MESSAGE = "TriggerMessage"
    UPDATE_FIRMWARE = "UpdateFirmware"
    FETCH_DIAGNOSTICS = "FetchDiagnostics"
    SET_CHARGING_LIMIT = "SetChargingLimit"
    CLEAR_CHARGING_LIMIT = "ClearChargingLimit"
    GET_COMPOSITE_SCHEDULE = "GetCompositeSchedule"
    RESERVE = "Reserve"
    CANCEL_RESERVATION = "CancelReservation"
    SEND_LOCAL_LIST = "SendLocalList"
    GET_LOCAL_LIST_VERSION = "GetLocalListVersion"
    CLEAR_CACHE = "ClearCache"
    DATA_TRANSFER = "DataTransfer"


class Failure(StrEnum):
    """Why a command got no answer from the station."""

    STATION_OFFLINE = "StationOffline"
    TIMEOUT = "Timeout"
    NOT_SUPPORTED = "NotSupported"  # the station's protocol version has no such operation
    INVALID_REQUEST = "InvalidRequest"  # the arguments do not make a valid message
    CALL_ERROR = "CallError"  # the station answered with a CALLERROR
    INVALID_ANSWER = "InvalidAnswer"  # the station's answer broke its schema
    CONNECTION_LOST = "ConnectionLost"


class CommandState(StrEnum):
    REQUESTED = "Requested"
    SENT = "Sent"
    ANSWERED = "Answered"
    FAILED = "Failed"


class RemoteCommand(Aggregate):
    class Requested(Aggregate.Created):
        station_id: str
        operation: str
        arguments: dict[str, Any]
        requested_by: str
        request_number: int  # unique across nodes: a request id, reservation or profile id

    class Sent(Aggregate.Event):
        node: str
        action: str
        message_id: str
        payload: dict[str, Any]

        def apply(self, command: RemoteCommand) -> None:
            command.state = CommandState.SENT
            command.action = self.action

    class Answered(Aggregate.Event):
        status: str | None  # the station's own word (Accepted, Rejected, ...), if it has one
        response: dict[str, Any]

        def apply(self, command: RemoteCommand) -> None:
            command.state = CommandState.ANSWERED
            command.status = self.status
            command.response = self.response
            command.settled_at = self.timestamp

    class Failed(Aggregate.Event):
        reason: str
        detail: str

        def apply(self, command: RemoteCommand) -> None:
            command.state = CommandState.FAILED
            command.failure = self.reason
            command.detail = self.detail
            command.settled_at = self.timestamp

    def __init__(
        self,
        station_id: str,
        operation: str,
        arguments: dict[str, Any],
        requested_by: str,
        request_number: int,
    ) -> None:
        self.station_id = station_id
        self.operation = operation
        self.arguments = arguments
        self.requested_by = requested_by
        self.request_number = request_number
        self.state = CommandState.REQUESTED
        self.action: str | None = None
        self.status: str | None = None
        self.response: dict[str, Any] | None = None
        self.failure: str | None = None
        self.detail: str | None = None
        self.settled_at: datetime | None = None

    @classmethod
    def request(
        cls,
        command_id: UUID,
        station_id: str,
        operation: Operation,
        arguments: dict[str, Any],
        requested_by: str,
        request_number: int,
        at: datetime,
    ) -> RemoteCommand:
        return cls._create(
            cls.Requested,
            id=command_id,
            timestamp=at,
            station_id=station_id,
            operation=operation.value,
            arguments=arguments,
            requested_by=requested_by,
            request_number=request_number,
        )

    @property
    def settled(self) -> bool:
        return self.state in (CommandState.ANSWERED, CommandState.FAILED)
