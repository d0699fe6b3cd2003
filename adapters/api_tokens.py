"""API tokens: a secret per client, kept only as its SHA-256, with one role."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

ROLES = ("operator", "auditor", "billing")
PREFIX = "csms_"

TABLE_SQL = """
CREATE TABLE IF NOT EXISTS api_tokens (
    name text PRIMARY KEY,
    role text NOT NULL,
    secret_sha256 text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz)"""


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class TokenError(Exception):
    pass


def create(conn: psycopg.Connection[Any], role: str, name: str | None = None) -> tuple[str, str]:
    """A new token's name and secret; the secret is shown once and never stored."""
    if role not in ROLES:
        raise TokenError(f"unknown role {role!r}: choose one of {', '.join(ROLES)}")
    secret = PREFIX + secrets.token_urlsafe(32)
    name = name or f"{role}-{secrets.token_hex(3)}"
    conn.execute(TABLE_SQL)
    try:
        conn.execute(
            "INSERT INTO api_tokens (name, role, secret_sha256) VALUES (%s, %s, %s)",
            (name, role, _digest(secret)),
        )
    except psycopg.errors.UniqueViolation:
        raise TokenError(f"a token named {name!r} exists already: choose another --name") from None
    return name, secret


def listing(conn: psycopg.Connection[Any]) -> list[tuple[str, str, datetime, datetime | None]]:
    conn.execute(TABLE_SQL)
    cursor = conn.execute(
        "SELECT name, role, created_at, revoked_at FROM api_tokens ORDER BY created_at"
    )
    return list(cursor.fetchall())


def revoke(conn: psycopg.Connection[Any], name: str) -> None:
    conn.execute(TABLE_SQL)
    cursor = conn.execute(
        "UPDATE api_tokens SET revoked_at = now() WHERE name = %s AND revoked_at IS NULL", (name,)
    )
    if cursor.rowcount == 0:
        raise TokenError(f"no active token named {name!r} (see `csms token list`)")


async def authenticate(pool: AsyncConnectionPool, secret: str) -> tuple[str, str] | None:
    """The name and role of the active token with this secret, if any."""
    async with pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT name, role FROM api_tokens WHERE secret_sha256 = %s AND revoked_at IS NULL",
            (_digest(secret),),
        )
        row = await cursor.fetchone()
    return (str(row[0]), str(row[1])) if row else None
