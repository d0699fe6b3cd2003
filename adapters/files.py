"""Files stations upload (diagnostics, logs), kept in PostgreSQL beside the events."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

TABLE_SQL = """
CREATE TABLE IF NOT EXISTS uploaded_files (
    file_id uuid PRIMARY KEY,
    command_id uuid NOT NULL,
    station_id text NOT NULL,
    file_name text NOT NULL,
    content_type text NOT NULL,
    size bigint NOT NULL,
    sha256 text NOT NULL,
    content bytea NOT NULL,
    uploaded_at timestamptz NOT NULL DEFAULT now());
CREATE INDEX IF NOT EXISTS uploaded_files_by_station ON uploaded_files (station_id, uploaded_at)
"""

_COLUMNS = "file_id, command_id, station_id, file_name, content_type, size, sha256, uploaded_at"


@dataclass(frozen=True)
class StoredFile:
    file_id: UUID
    command_id: UUID
    station_id: str
    file_name: str
    content_type: str
    size: int
    sha256: str
    uploaded_at: datetime


class FileStore:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def store(
        self, command_id: UUID, station_id: str, file_name: str, content_type: str, content: bytes
    ) -> StoredFile:
        digest = hashlib.sha256(content).hexdigest()
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cursor:
            await cursor.execute(
                f"INSERT INTO uploaded_files ({_COLUMNS}, content) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, now(), %s) "
                f"RETURNING {_COLUMNS}",
                (
                    uuid4(),
                    command_id,
                    station_id,
                    file_name,
                    content_type,
                    len(content),
                    digest,
                    content,
                ),
            )
            row = await cursor.fetchone()
        assert row is not None
        return StoredFile(**row)

    async def listing(self, station_id: str) -> list[StoredFile]:
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cursor:
            await cursor.execute(
                f"SELECT {_COLUMNS} FROM uploaded_files WHERE station_id = %s "
                "ORDER BY uploaded_at DESC",
                (station_id,),
            )
            return [StoredFile(**row) for row in await cursor.fetchall()]

    async def content(self, file_id: UUID) -> tuple[StoredFile, bytes] | None:
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cursor:
            await cursor.execute(
                f"SELECT {_COLUMNS}, content FROM uploaded_files WHERE file_id = %s", (file_id,)
            )
            row: dict[str, Any] | None = await cursor.fetchone()
        if row is None:
            return None
        content = bytes(row.pop("content"))
        return StoredFile(**row), content
