"""Registered stations and their passwords (OCPP security profiles 1 and 2).

A station presents its password by HTTP Basic authentication when it opens its WebSocket, with
its identity as the user name; one that presented a client certificate for its identity
(profile 3, checked by the gateway) is asked for none. Only a salted SHA-256 of each password
is kept (table `station_credentials`). The passwords are machine secrets of 16 to 40
characters, and a deliberately slow hash would make thousands of stations reconnecting after
an outage queue for the CPU: each handshake checks one.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool
from websockets.exceptions import InvalidHeader
from websockets.headers import parse_authorization_basic

from domain.station import CredentialsChange

log = logging.getLogger(__name__)

TABLE_SQL = """
CREATE TABLE IF NOT EXISTS station_credentials (
    station_id text PRIMARY KEY,
    password_salt bytea,
    password_sha256 bytea,
    registered_at timestamptz NOT NULL DEFAULT now(),
    password_set_at timestamptz)"""

# Notified with a station's identity when its credentials change: its connection is closed, so
# that it connects, and authenticates, again.
CHANGED_CHANNEL = "csms_station_credentials"
EVERY_STATION = ":all"  # a notification that any station may have changed (':' is no identity's)
NOTIFIED_ONE_BY_ONE = 100  # more changes at once are notified as EVERY_STATION

# OCPP: the identity is at most 48 printable characters; ':' would break basic auth.
IDENTITY = re.compile(r"^[\x21-\x39\x3b-\x7e]{1,48}$")

# OCPP 2.0.1's BasicAuthPassword: 16 to 40 characters; printable ASCII, as an HTTP header takes.
PASSWORD = re.compile(r"^[\x20-\x7e]{16,40}$")
PASSWORD_RULE = "a password is 16 to 40 printable ASCII characters"


class Verdict(Enum):
    ADMITTED = "admitted"
    UNKNOWN = "unknown station"  # not registered, and unknown stations are refused
    NO_PASSWORD = "no password given"
    WRONG_PASSWORD = "wrong password"


@dataclass(frozen=True)
class Credentials:
    """A registered station's: its password's salt and digest, or None for none."""

    salt: bytes | None
    digest: bytes | None

    def accepts(self, password: str) -> bool:
        """Whether this is the station's password (False if it has none)."""
        if self.salt is None or self.digest is None:
            return False
        return hmac.compare_digest(_digest(self.salt, password), self.digest)


def _digest(salt: bytes, password: str) -> bytes:
    # The header's bytes that are not UTF-8 come as surrogates: hash the bytes as sent.
    return hashlib.sha256(salt + password.encode(errors="surrogateescape")).digest()


def decide(
    station_id: str,
    credentials: Credentials | None,
    authorization: str | None,
    accept_unknown: bool,
    certified: bool = False,
) -> Verdict:
    """Whether a station opening a connection with this Authorization header may in; one that
    presented its own client certificate (`certified`) needs no password."""
    if credentials is None:
        return Verdict.ADMITTED if accept_unknown else Verdict.UNKNOWN
    if credentials.digest is None or certified:
        return Verdict.ADMITTED  # registered without a password (profile 0), or profile 3
    if authorization is None:
        return Verdict.NO_PASSWORD
    try:
        user, password = parse_authorization_basic(authorization)
    except InvalidHeader:
        return Verdict.NO_PASSWORD
    if user != station_id or not credentials.accepts(password):
        return Verdict.WRONG_PASSWORD
    return Verdict.ADMITTED


class StationCredentials:
    """Every registered station's credentials, mirrored in memory: a storm's handshakes cost no
    query (one each starved the connection pool). Each change is notified (CHANGED_CHANNEL)
    with its station's identity, or EVERY_STATION; the notified stations are read again
    together, and the whole table when the node starts listening, or listens anew after
    missing what was notified meanwhile. `on_change` hears of every station whose credentials
    differ from what the mirror held."""

    def __init__(self, pool: AsyncConnectionPool, accept_unknown: bool) -> None:
        self._pool = pool
        self._accept_unknown = accept_unknown
        self._known: dict[str, Credentials] = {}
        self._loaded = asyncio.Event()
        self._pending: set[str] = set()
        self._reading: asyncio.Task[None] | None = None
        self.on_change: Callable[[str], None] = lambda station_id: None

    async def ready(self, report_every: float = 30) -> None:
        """Waits for the first whole read (started by `listening`), however long it takes (no
        station is let in before its credentials are known), saying so every `report_every`
        seconds."""
        waited = 0.0
        while True:
            try:
                await asyncio.wait_for(self._loaded.wait(), report_every)
            except TimeoutError:
                waited += report_every
                log.warning(
                    "still reading the station credentials after %.0f s: stations are let in "
                    "once they are read (is the station_credentials table locked by another "
                    "session, or the database overloaded? pg_stat_activity shows who waits)",
                    waited,
                )
            else:
                return

    def check(self, station_id: str, authorization: str | None, certified: bool) -> Verdict:
        credentials = self._known.get(station_id)
        return decide(station_id, credentials, authorization, self._accept_unknown, certified)

    def listening(self) -> None:
        """The node (again) hears of every change: read them all, any may have been missed."""
        self.changed(EVERY_STATION)

    def changed(self, station_id: str) -> None:
        self._pending.add(station_id)
        if self._reading is None or self._reading.done():
            self._reading = asyncio.create_task(self._read_pending())

    async def refresh(self, station_id: str, within: float = 10) -> None:
        """Reads a station's credentials again and waits until they are in the mirror: a change
        made through this node is in force here when its caller hears it is done, not only once
        the notification comes back (other nodes follow on that)."""
        self.changed(station_id)
        reading = self._reading
        assert reading is not None
        # Shielded: a caller that gives up must not cancel the reading others wait on.
        await asyncio.wait_for(asyncio.shield(reading), within)

    async def _read_pending(self) -> None:
        while self._pending:
            stations, self._pending = self._pending, set()
            whole = EVERY_STATION in stations
            try:
                rows = await self._read(None if whole else sorted(stations))
            except Exception:
                log.exception("could not read station credentials; reading all again in 1 s")
                await asyncio.sleep(1)
                self._pending.add(EVERY_STATION)
                continue
            self._apply(set(self._known) | set(rows) if whole else stations, rows)
            self._loaded.set()

    def _apply(self, stations: set[str], rows: dict[str, Credentials]) -> None:
        for station_id in stations:
            after, before = rows.get(station_id), self._known.get(station_id)
            if after == before:
                continue
            if after is None:
                del self._known[station_id]
            else:
                self._known[station_id] = after
            self.on_change(station_id)

    async def _read(self, stations: list[str] | None) -> dict[str, Credentials]:
        """The credentials of these stations (None: of all)."""
        query = "SELECT station_id, password_salt, password_sha256 FROM station_credentials"
        async with self._pool.connection() as conn:
            cursor = await (
                conn.execute(query)
                if stations is None
                else conn.execute(query + " WHERE station_id = ANY(%s)", (stations,))
            )
            return {row[0]: Credentials(row[1], row[2]) async for row in cursor}


class CredentialsError(Exception):
    pass


def check_identity(station_id: str) -> None:
    if not IDENTITY.match(station_id):
        raise CredentialsError(f"{station_id!r} is not a station identity")


def generate_password() -> str:
    """32 URL-safe characters (192 random bits)."""
    return secrets.token_urlsafe(24)


def _salted(password: str | None) -> tuple[bytes | None, bytes | None]:
    if password is None:
        return None, None
    if not PASSWORD.match(password):
        raise CredentialsError(PASSWORD_RULE)
    salt = secrets.token_bytes(16)
    return salt, _digest(salt, password)


def apply(
    conn: psycopg.Connection[Any], station_id: str, change: CredentialsChange, password: str | None
) -> None:
    """Registers the station, changes its password or forgets it, as `change` says."""
    check_identity(station_id)
    if change is CredentialsChange.REMOVED:
        remove(conn, station_id)
    elif change in (CredentialsChange.REGISTERED, CredentialsChange.REGISTERED_WITHOUT_PASSWORD):
        register(conn, station_id, password)
    else:
        set_password(conn, station_id, password)


def register(conn: psycopg.Connection[Any], station_id: str, password: str | None) -> None:
    """Registers a station, with a password or (None) without."""
    register_many(conn, [(station_id, password)])


def register_many(
    conn: psycopg.Connection[Any], stations: Sequence[tuple[str, str | None]]
) -> None:
    """Registers stations, each with a password or without, all or none."""
    rows = [(station_id, *_salted(password)) for station_id, password in stations]
    conn.execute(TABLE_SQL)
    with conn.transaction():
        cursor = conn.execute(
            "SELECT station_id FROM station_credentials WHERE station_id = ANY(%s) "
            "ORDER BY station_id LIMIT 5",
            ([station_id for station_id, _ in stations],),
        )
        if known := [str(row[0]) for row in cursor]:
            raise CredentialsError(
                f"registered already: {', '.join(map(repr, known))}"
                f"{' and more' if len(known) == 5 else ''} (`csms station password` changes "
                "a password)"
            )
        try:
            with conn.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO station_credentials (station_id, password_salt, "
                    "password_sha256, password_set_at) VALUES (%s, %s, %s, "
                    "CASE WHEN %s THEN now() END)",
                    [(*row, row[2] is not None) for row in rows],
                )
        except psycopg.errors.UniqueViolation as error:  # registered meanwhile, or listed twice
            raise CredentialsError(f"registered twice: {error.diag.message_detail}") from None
        _notify(conn, *(station_id for station_id, _ in stations))


def set_password(conn: psycopg.Connection[Any], station_id: str, password: str | None) -> None:
    """Replaces a registered station's password; None removes it."""
    salt, digest = _salted(password)
    conn.execute(TABLE_SQL)
    cursor = conn.execute(
        "UPDATE station_credentials SET password_salt = %s, password_sha256 = %s, "
        "password_set_at = now() WHERE station_id = %s",
        (salt, digest, station_id),
    )
    if cursor.rowcount == 0:
        raise CredentialsError(
            f"station {station_id!r} is not registered: `csms station add` registers it"
        )
    _notify(conn, station_id)


def remove(conn: psycopg.Connection[Any], station_id: str) -> None:
    conn.execute(TABLE_SQL)
    cursor = conn.execute("DELETE FROM station_credentials WHERE station_id = %s", (station_id,))
    if cursor.rowcount == 0:
        raise CredentialsError(f"station {station_id!r} is not registered (csms station list)")
    _notify(conn, station_id)


def _notify(conn: psycopg.Connection[Any], *station_ids: str) -> None:
    """Tells every node which stations changed; of many, that any may have."""
    notified = list(station_ids) if len(station_ids) <= NOTIFIED_ONE_BY_ONE else [EVERY_STATION]
    conn.execute(
        "SELECT pg_notify(%s, station_id) FROM unnest(%s::text[]) AS station_id",
        (CHANGED_CHANNEL, notified),
    )


def listing(conn: psycopg.Connection[Any]) -> list[tuple[str, bool, datetime, datetime | None]]:
    """Each registered station: its identity, whether it has a password, and when set."""
    conn.execute(TABLE_SQL)
    cursor = conn.execute(
        "SELECT station_id, password_sha256 IS NOT NULL, registered_at, password_set_at "
        "FROM station_credentials ORDER BY station_id"
    )
    return list(cursor.fetchall())
