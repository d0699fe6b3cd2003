"""Commands an operator gives: remote commands to stations, and the id token registry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from domain.id_tokens import IdToken
from domain.ids import id_token_uuid
from domain.remote import CommandState, Operation, RemoteCommand
from domain.station import ChargingStation, CredentialsChange
from domain.tariffs import Prices, Tariff
from domain.unit_of_work import UnitOfWork


class OperatorError(Exception):
    """A request that contradicts what is known (a token that exists, one that does not)."""


@dataclass(frozen=True)
class RequestRemoteCommand:
    """Records who asked what of a station; returns the request number it was given."""

    command_id: UUID
    station_id: str
    operation: Operation
    arguments: dict[str, Any]
    requested_by: str
    received_at: datetime

    def execute(self, uow: UnitOfWork) -> int:
        earlier = uow.get(RemoteCommand, self.command_id)
        if earlier is not None:
            return int(earlier.request_number)
        command = RemoteCommand.request(
            self.command_id,
            self.station_id,
            self.operation,
            self.arguments,
            self.requested_by,
            uow.allocate_number(),
            self.received_at,
        )
        uow.add(command)
        return int(command.request_number)


@dataclass(frozen=True)
class MarkRemoteCommandSent:
    """Claims the command for delivery; False if it was already settled (e.g. as offline)."""

    command_id: UUID
    node: str
    action: str
    message_id: str
    payload: dict[str, Any]
    sent_at: datetime

    def execute(self, uow: UnitOfWork) -> bool:
        command = _command(uow, self.command_id)
        if command.settled:
            return False
        command.trigger_event(
            RemoteCommand.Sent,
            node=self.node,
            action=self.action,
            message_id=self.message_id,
            payload=self.payload,
            timestamp=self.sent_at,
        )
        return True


@dataclass(frozen=True)
class SettleRemoteCommand:
    """Records the station's answer, or why there was none; the first outcome stands."""

    command_id: UUID
    status: str | None
    response: dict[str, Any] | None
    failure: str | None
    detail: str
    settled_at: datetime
    only_if_unsent: bool = False  # "offline" is true only if no node has sent it

    def execute(self, uow: UnitOfWork) -> bool:
        command = _command(uow, self.command_id)
        if command.settled or (self.only_if_unsent and command.state is CommandState.SENT):
            return False
        if self.failure is not None:
            command.trigger_event(
                RemoteCommand.Failed,
                reason=self.failure,
                detail=self.detail,
                timestamp=self.settled_at,
            )
        else:
            command.trigger_event(
                RemoteCommand.Answered,
                status=self.status,
                response=self.response or {},
                timestamp=self.settled_at,
            )
        return True


def _command(uow: UnitOfWork, command_id: UUID) -> RemoteCommand:
    command = uow.get(RemoteCommand, command_id)
    if command is None:
        raise OperatorError(f"no remote command {command_id}")
    return command


@dataclass(frozen=True)
class RegisterIdToken:
    id_token: str
    token_type: str | None
    parent_id_token: str | None
    group_id_token: str | None
    expires_at: datetime | None
    by: str
    at: datetime

    def execute(self, uow: UnitOfWork) -> IdToken:
        if uow.get(IdToken, id_token_uuid(self.id_token)) is not None:
            raise OperatorError(f"id token {self.id_token!r} is already registered")
        token = IdToken.register(
            self.id_token,
            self.token_type,
            self.parent_id_token,
            self.group_id_token,
            self.expires_at,
            self.by,
            self.at,
        )
        uow.add(token)
        return token


@dataclass(frozen=True)
class ChangeIdToken:
    """Blocks, unblocks or sets the expiry of a registered token."""

    id_token: str
    change: type[IdToken.Blocked] | type[IdToken.Unblocked] | type[IdToken.ExpirySet]
    fields: dict[str, Any]
    by: str
    at: datetime

    def execute(self, uow: UnitOfWork) -> IdToken:
        token = uow.get(IdToken, id_token_uuid(self.id_token))
        if token is None:
            raise OperatorError(f"id token {self.id_token!r} is not registered")
        token.trigger_event(self.change, by=self.by, timestamp=self.at, **self.fields)
        return token


@dataclass(frozen=True)
class RecordCredentialsChange:
    """Records that a station's registration or password changed (registering the station if
    it never connected)."""

    station_id: str
    change: CredentialsChange
    by: str
    at: datetime

    def execute(self, uow: UnitOfWork) -> None:
        uow.station(self.station_id).trigger_event(
            ChargingStation.CredentialsChanged,
            change=self.change.value,
            by=self.by,
            timestamp=self.at,
        )


@dataclass(frozen=True)
class CreateTariff:
    tariff_id: UUID
    name: str
    currency: str
    prices: Prices
    station_ids: list[str] | None
    valid_from: datetime
    valid_to: datetime | None
    by: str
    at: datetime

    def execute(self, uow: UnitOfWork) -> Tariff:
        if uow.get(Tariff, self.tariff_id) is not None:
            raise OperatorError(f"tariff {self.tariff_id} exists already")
        tariff = Tariff.create(
            self.tariff_id,
            self.name,
            self.currency,
            self.prices,
            self.station_ids,
            self.valid_from,
            self.valid_to,
            self.by,
            self.at,
        )
        uow.add(tariff)
        return tariff


@dataclass(frozen=True)
class ChangeTariff:
    """New prices from a moment on, or the end of the tariff's validity."""

    tariff_id: UUID
    prices: Prices | None
    effective_from: datetime
    valid_to: datetime | None
    by: str
    at: datetime

    def execute(self, uow: UnitOfWork) -> Tariff:
        tariff = uow.get(Tariff, self.tariff_id)
        if tariff is None:
            raise OperatorError(f"no tariff {self.tariff_id}")
        if self.prices is not None:
            tariff.change_prices(self.prices, self.effective_from, self.by, self.at)
        if self.valid_to is not None:
            tariff.end(self.valid_to, self.by, self.at)
        return tariff
