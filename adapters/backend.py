"""The API's view of the system: remote commands, domain commands, notifications, files."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.application import AggregateNotFoundError
from psycopg_pool import AsyncConnectionPool

from adapters import api_tokens, frames, metrics, station_credentials
from adapters.files import FileStore, StoredFile
from adapters.notifications import Notifications
from adapters.ocpp.translator import Submit
from adapters.routing import SETTLED, CommandRouter
from adapters.station_credentials import StationCredentials
from domain.commands import RecordStationReport
from domain.remote import Operation, RemoteCommand
from domain.station import ChargingStation, CredentialsChange

log = logging.getLogger(__name__)


def _change_credentials(
    database_url: str, station_id: str, change: CredentialsChange, password: str | None
) -> None:
    # A rare change, through the same functions as `csms station`: a connection of its own.
    with psycopg.connect(database_url, autocommit=True) as conn:
        station_credentials.apply(conn, station_id, change, password)


class ServerBackend:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        submit: Submit,
        router: CommandRouter,
        notifications: Notifications,
        read_aggregate: Callable[[UUID], Any],
        read_as_of: Callable[[UUID, datetime], Any],
        public_url: str,
        max_upload_bytes: int,
        station_channel: str,
        database_url: str,
        credentials: StationCredentials,
    ) -> None:
        self._pool = pool
        self._database_url = database_url
        self._credentials = credentials
        self._submit = submit
        self._router = router
        self._notifications = notifications
        self._read_aggregate = read_aggregate
        self._read_as_of = read_as_of
        self._files = FileStore(pool)
        self.public_url = public_url.rstrip("/")
        self.max_upload_bytes = max_upload_bytes
        self._station_channel = station_channel  # where station changes are announced

    async def authenticate(self, secret: str) -> tuple[str, str] | None:
        return await api_tokens.authenticate(self._pool, secret)

    async def change_credentials(
        self, station_id: str, change: CredentialsChange, password: str | None, generate: bool
    ) -> str | None:
        if generate:
            password = station_credentials.generate_password()
        url = self._database_url
        try:
            await asyncio.to_thread(_change_credentials, url, station_id, change, password)
        except station_credentials.CredentialsError as error:
            raise ValueError(str(error)) from None
        try:
            await self._credentials.refresh(station_id)  # in force when the operator hears so
        except TimeoutError:
            # Stored all the same, and the password must reach the operator: the node applies
            # the change once it can read it (it keeps trying).
            log.warning("%s: credentials changed, not yet read back by this node", station_id)
        return password if generate else None

    async def remote(
        self,
        station_id: str,
        operation: Operation,
        arguments: dict[str, Any],
        requested_by: str,
        command_id: UUID,
    ) -> RemoteCommand:
        return await self._router.execute(
            station_id, operation, arguments, requested_by, command_id
        )

    async def run(self, command: Any) -> Any:
        return await self._submit(command)

    async def read_command(self, command_id: UUID) -> RemoteCommand | None:
        try:
            found = await asyncio.to_thread(self._read_aggregate, command_id)
        except AggregateNotFoundError:
            return None
        return found if isinstance(found, RemoteCommand) else None

    def station_changes(self) -> AbstractAsyncContextManager[asyncio.Queue[str]]:
        return self._notifications.subscribe(self._station_channel)

    def command_settlements(self) -> AbstractAsyncContextManager[asyncio.Queue[str]]:
        return self._notifications.subscribe(SETTLED)

    async def store_upload(
        self, command_id: UUID, file_name: str, content_type: str, content: bytes
    ) -> StoredFile | None:
        command = await self.read_command(command_id)
        if command is None or command.operation != Operation.FETCH_DIAGNOSTICS:
            return None
        stored = await self._files.store(
            command_id, command.station_id, file_name, content_type, content
        )
        await self._submit(
            RecordStationReport(
                command.station_id,
                ChargingStation.FileUploaded,
                {
                    "command_id": str(command_id),
                    "file_id": str(stored.file_id),
                    "file_name": file_name,
                    "size": stored.size,
                    "sha256": stored.sha256,
                },
                datetime.now(UTC),
            )
        )
        return stored

    async def uploads(self, station_id: str) -> list[StoredFile]:
        return await self._files.listing(station_id)

    async def download(self, file_id: UUID) -> tuple[StoredFile, bytes] | None:
        return await self._files.content(file_id)

    async def aggregate_at(self, aggregate_id: UUID, moment: datetime) -> Any:
        return await asyncio.to_thread(self._read_as_of, aggregate_id, moment)

    async def frames(
        self,
        station_id: str,
        since: datetime | None,
        until: datetime | None,
        after: int,
        limit: int,
    ) -> list[dict[str, Any]]:
        return await frames.read(self._pool, station_id, since, until, after, limit)

    async def metrics(self) -> tuple[bytes, str]:
        return await asyncio.to_thread(metrics.exposition)
