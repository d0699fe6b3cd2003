"""What the API needs from the rest of the system, as narrow interfaces the server provides."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol
from uuid import UUID

from psycopg_pool import AsyncConnectionPool
from strawberry.types import Info

from domain.remote import Operation, RemoteCommand
from domain.station import CredentialsChange


class Role(StrEnum):
    OPERATOR = "operator"  # reads and commands
    AUDITOR = "auditor"  # reads and history
    BILLING = "billing"  # sessions and the billing feed


class FileInfo(Protocol):
    @property
    def file_id(self) -> UUID: ...
    @property
    def command_id(self) -> UUID: ...
    @property
    def station_id(self) -> str: ...
    @property
    def file_name(self) -> str: ...
    @property
    def content_type(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def sha256(self) -> str: ...
    @property
    def uploaded_at(self) -> datetime: ...


class Backend(Protocol):
    public_url: str  # where stations reach this node's HTTP endpoints (uploads)
    max_upload_bytes: int

    async def authenticate(self, secret: str) -> tuple[str, str] | None:
        """The name and role of an active API token."""
        ...

    async def remote(
        self,
        station_id: str,
        operation: Operation,
        arguments: dict[str, Any],
        requested_by: str,
        command_id: UUID,
    ) -> RemoteCommand:
        """Runs a remote command wherever the station is connected; returns it settled."""
        ...

    async def run(self, command: Any) -> Any:
        """Runs a domain command; returns its result once its events are committed."""
        ...

    async def read_command(self, command_id: UUID) -> RemoteCommand | None: ...

    async def change_credentials(
        self, station_id: str, change: CredentialsChange, password: str | None, generate: bool
    ) -> str | None:
        """Registers a station, sets its password or forgets it, as `change` says, with
        `password`, or one generated if `generate` (returned, to be shown once). Raises
        ValueError, saying why, if it cannot (a station registered already, ...)."""
        ...

    def station_changes(self) -> AbstractAsyncContextManager[asyncio.Queue[str]]:
        """Uuids of stations whose live status changed, while the context lasts."""
        ...

    def command_settlements(self) -> AbstractAsyncContextManager[asyncio.Queue[str]]:
        """Ids of remote commands that were answered or failed, while the context lasts."""
        ...

    async def store_upload(
        self, command_id: UUID, file_name: str, content_type: str, content: bytes
    ) -> FileInfo | None:
        """Keeps a file a station uploaded for a command; None if no command asked for it."""
        ...

    async def uploads(self, station_id: str) -> Sequence[FileInfo]: ...

    async def download(self, file_id: UUID) -> tuple[FileInfo, bytes] | None: ...

    async def aggregate_at(self, aggregate_id: UUID, moment: datetime) -> Any:
        """The aggregate replayed from the store up to its last event recorded by the moment;
        None if it did not exist yet."""
        ...

    async def frames(
        self,
        station_id: str,
        since: datetime | None,
        until: datetime | None,
        after: int,
        limit: int,
    ) -> list[dict[str, Any]]:
        """A station's journaled OCPP frames, in order, after a cursor, in a time window."""
        ...

    async def metrics(self) -> tuple[bytes, str]:
        """The server's metrics in Prometheus' text format, and that format's content type."""
        ...


def backend(info: Info) -> Backend:
    found: Backend = info.context["backend"]
    return found


def pool(info: Info) -> AsyncConnectionPool:
    """The API's connection pool, for reading the projections."""
    found: AsyncConnectionPool = info.context["pool"]
    return found
