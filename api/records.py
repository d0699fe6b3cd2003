"""GraphQL types of what operators ask and register: remote commands, id tokens, uploads."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import strawberry
from strawberry.scalars import JSON

from domain.id_tokens import IdToken
from domain.remote import CommandState, RemoteCommand


@strawberry.type
class RemoteCommandResult:
    id: UUID
    station_id: str
    operation: str
    arguments: JSON
    state: str = strawberry.field(description="Requested, Sent, Answered or Failed")
    status: str | None = strawberry.field(
        description="The station's answer in its own word: Accepted, Rejected, ..."
    )
    accepted: bool = strawberry.field(description="Answered, and not with a refusal")
    response: JSON | None = strawberry.field(description="The station's whole answer")
    failure: str | None = strawberry.field(
        description="Why there was no answer: StationOffline, Timeout, NotSupported, "
        "InvalidRequest, CallError, InvalidAnswer, ConnectionLost"
    )
    detail: str | None
    action: str | None = strawberry.field(description="The OCPP call it became")
    requested_by: str
    requested_at: datetime
    settled_at: datetime | None

    @staticmethod
    def of(command: RemoteCommand) -> RemoteCommandResult:
        return RemoteCommandResult(
            id=command.id,
            station_id=command.station_id,
            operation=command.operation,
            arguments=_plain(command.arguments),
            state=command.state.value,
            status=command.status,
            accepted=_accepted(command.state.value, command.status),
            response=_plain(command.response),
            failure=command.failure,
            detail=command.detail,
            action=command.action,
            requested_by=command.requested_by,
            requested_at=command.created_on,
            settled_at=command.settled_at,
        )

    @staticmethod
    def from_row(row: dict[str, Any]) -> RemoteCommandResult:
        return RemoteCommandResult(
            id=row["command_id"],
            station_id=row["station_id"],
            operation=row["operation"],
            arguments=row["arguments"],
            state=row["state"],
            status=row["status"],
            accepted=_accepted(row["state"], row["status"]),
            response=row["response"],
            failure=row["failure"],
            detail=row["detail"],
            action=row["action"],
            requested_by=row["requested_by"],
            requested_at=row["requested_at"],
            settled_at=row["settled_at"],
        )


# The words with which stations say yes; any other status is a refusal of some kind.
_YES = frozenset({"Accepted", "Unlocked", "Scheduled", "RebootRequired", "AcceptedCanceled"})


def _accepted(state: str, status: str | None) -> bool:
    return state == CommandState.ANSWERED.value and (status is None or status in _YES)


def _plain(value: Any) -> Any:
    """JSON-ready: Decimals (limits, readings) as numbers."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, Decimal):
        return float(value)
    return value


@strawberry.type
class IdTokenRecord:
    id_token: str
    token_type: str | None
    parent_id_token: str | None
    group_id_token: str | None
    expires_at: datetime | None
    blocked: bool
    registered_by: str
    updated_at: datetime

    @staticmethod
    def of(token: IdToken) -> IdTokenRecord:
        return IdTokenRecord(
            id_token=token.id_token,
            token_type=token.token_type,
            parent_id_token=token.parent_id_token,
            group_id_token=token.group_id_token,
            expires_at=token.expires_at,
            blocked=token.blocked,
            registered_by=token.registered_by,
            updated_at=token.modified_on,
        )

    @staticmethod
    def from_row(row: dict[str, Any]) -> IdTokenRecord:
        return IdTokenRecord(
            id_token=row["id_token"],
            token_type=row["token_type"],
            parent_id_token=row["parent_id_token"],
            group_id_token=row["group_id_token"],
            expires_at=row["expires_at"],
            blocked=row["blocked"],
            registered_by=row["registered_by"],
            updated_at=row["updated_at"],
        )


@strawberry.type
class Upload:
    id: UUID
    command_id: UUID
    file_name: str
    content_type: str
    size: int
    sha256: str
    uploaded_at: datetime
    download_path: str = strawberry.field(
        description="GET it with an operator or auditor token in the Authorization header"
    )
