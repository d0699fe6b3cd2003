"""A view whose rows and tracking position are written in one PostgreSQL transaction."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any, cast

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from psycopg import Connection, Cursor
from psycopg.sql import SQL, Composed, Identifier, Placeholder

Statement = tuple[str, dict[str, Any]]
Work = Callable[[Cursor[Any]], None]
# A statement's parameters, or a function that gives them when the statement is sent.
Params = Any | Callable[[], Any]


class SqlView(PostgresTrackingRecorder):
    """Subclasses list their DDL in `tables`."""

    tables: Sequence[str] = ()
    # Where unqualified table names resolve; set to build the view in another schema.
    search_path: str | None = None

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        self.sql_create_statements.extend(Composed([SQL(ddl)]) for ddl in self.tables)  # type: ignore[arg-type]
        self._batch: _CursorPerStatement | None = None
        self._batch_tracking: Tracking | None = None
        # What the projection read or wrote, kept so that the next events need not read it
        # again. It dies with the view: a restart or a rebuild starts from the tables.
        self.kept: Kept = Kept()

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Applies every event recorded inside it in one transaction, and tracks the last.

        One commit for hundreds of events instead of one each: this is what lets the views
        keep up with the store. If one event fails, none of the batch is applied.
        """
        try:
            with self._pipelined_transaction() as pipelined:
                self._batch = pipelined
                try:
                    yield
                    if self._batch_tracking is not None:
                        self._insert_tracking(cast(Cursor[Any], pipelined), self._batch_tracking)
                finally:
                    self._batch, self._batch_tracking = None, None
        except BaseException:
            # The memory may hold what the rolled-back batch did: the tables are the truth.
            self.kept.clear()
            raise

    @contextmanager
    def _pipelined_transaction(self) -> Iterator[_CursorPerStatement]:
        with (
            self.datastore.transaction(commit=True) as cursor,
            _CursorPerStatement(cursor.connection) as statements,
        ):
            # In a pipeline a statement waits for no answer; only a read waits, for its own.
            self._begin(cast(Cursor[Any], statements))
            yield statements
            statements.flush_all()

    def defer(self, cursor: Cursor[Any], key: Hashable, sql: str, params: Params) -> None:
        """Runs the statement before the batch's next read or at its end, unless a later one
        of the same key replaces it first; outside a batch, runs it now.

        For statements that set a row's whole state from what is known: only the last one
        matters. Deferred statements of different keys must not depend on each other's order.
        `params` may be a function, called when the statement is sent, so that work a later
        statement of the same key makes useless is not done.
        """
        if self._batch is None:
            cursor.execute(sql, _called(params))  # type: ignore[arg-type]
        else:
            self._batch.defer(key, sql, params)

    def notify(self, cursor: Cursor[Any], channel: str, payload: str) -> None:
        """Sends a notification on commit; a batch sends each payload once, in one statement."""
        if self._batch is None:
            cursor.execute("SELECT pg_notify(%s, %s)", (channel, payload))
        else:
            self._batch.notify(channel, payload)

    def record(self, tracking: Tracking, statements: Sequence[Statement]) -> None:
        """Applies the statements and moves the tracking position, atomically."""

        def apply(cursor: Cursor[Any]) -> None:
            for sql, params in statements:
                cursor.execute(sql, params)  # type: ignore[arg-type]

        self.record_with(tracking, apply)

    def record_with(self, tracking: Tracking, work: Work) -> None:
        """Does the work (which may read the view) and moves the tracking position, atomically.

        Applying an event at or before the stored position fails the tracking insert, so the
        whole transaction rolls back and the view is left as it was.
        """
        if self._batch is not None:
            work(cast(Cursor[Any], self._batch))
            self._batch_tracking = tracking
            return
        with self.datastore.transaction(commit=True) as cursor:
            self._begin(cursor)
            work(cursor)
            self._insert_tracking(cursor, tracking)

    def _begin(self, cursor: Cursor[Any]) -> None:
        cursor.execute("SET LOCAL synchronous_commit = off")  # a view can be rebuilt
        if self.search_path:
            cursor.execute(SQL("SET LOCAL search_path TO {}").format(Identifier(self.search_path)))


def append(cursor: Cursor[Any], table: str, columns: Sequence[str], row: Sequence[Any]) -> None:
    """Inserts a row into a table the projection only inserts into and reads with SELECT.

    Inside a batch, rows wait for the next SELECT (or the end) and are copied in together: a
    row copied costs a third of a row inserted. The row must not conflict with any other.
    """
    if isinstance(cursor, _CursorPerStatement):
        cursor.append(table, tuple(columns), row)
    else:
        insert = SQL("INSERT INTO {} ({}) VALUES ({})").format(
            Identifier(table),
            SQL(", ").join(map(Identifier, columns)),
            SQL(", ").join(Placeholder() * len(columns)),
        )
        cursor.execute(insert, row)


class Kept(OrderedDict[Any, Any]):
    """A dict that forgets its least recently used entries beyond `size`."""

    def __init__(self, size: int = 50_000) -> None:
        super().__init__()
        self._size = size

    def __getitem__(self, key: Any) -> Any:
        value = super().__getitem__(key)
        self.move_to_end(key)
        return value

    def get(self, key: Any, default: Any = None) -> Any:
        # OrderedDict's own `get` does not go through `__getitem__`: it would not mark the
        # entry used, and an entry read on every event would be forgotten as if unused.
        try:
            return self[key]
        except KeyError:
            return default

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        if len(self) > self._size:
            self.popitem(last=False)


class _CursorPerStatement:
    """Runs each statement on a cursor of its own, and runs of one statement as one.

    In a pipeline, a cursor that ran several statements fetches the first of their results, not
    the last; with one cursor per statement, a read always gets its own statement's rows.
    Consecutive executions of the same SQL are sent together (`executemany`), in order, before
    anything else, so the effect is that of running them one by one. Deferred statements and
    appended rows wait for the next read (a SELECT, or any statement not given as text) or the
    end; deferred ones are then sent together by SQL, and notifications with one statement a
    channel. Parameters are read when sent, not when given: what a caller changes in them
    meanwhile is sent too.
    """

    def __init__(self, connection: Connection[Any]) -> None:
        self._connection = connection
        self._last: Cursor[Any] | None = None
        self._run_sql: Any = None
        self._run: list[Any] = []
        self._deferred: dict[Hashable, tuple[str, Params]] = {}
        self._notifications: dict[str, dict[str, None]] = {}  # payloads in order, once each
        self._appended: dict[tuple[str, tuple[str, ...]], list[Sequence[Any]]] = {}
        self._pipeline = ExitStack()

    def __enter__(self) -> _CursorPerStatement:
        self._pipeline.enter_context(self._connection.pipeline())
        return self

    def __exit__(self, *exc: object) -> None:
        self._pipeline.close()

    def append(self, table: str, columns: tuple[str, ...], row: Sequence[Any]) -> None:
        self._appended.setdefault((table, columns), []).append(row)

    def defer(self, key: Hashable, sql: str, params: Params) -> None:
        self._deferred.pop(key, None)  # the replacement goes last
        self._deferred[key] = (sql, params)

    def notify(self, channel: str, payload: str) -> None:
        self._notifications.setdefault(channel, {})[payload] = None

    def execute(self, query: Any, params: Any = None, **options: Any) -> _CursorPerStatement:
        if options or not isinstance(query, str) or _is_read(query):
            self.flush_all()
            self._last = self._connection.cursor()
            self._last.execute(query, params, **options)
            return self
        if query != self._run_sql:
            self.flush()
            self._run_sql = query
        self._run.append(params)
        return self

    def executemany(self, query: Any, params_seq: Any, **options: Any) -> None:
        self.flush()
        self._last = self._connection.cursor()
        self._last.executemany(query, params_seq, **options)

    def flush_all(self) -> None:
        """Sends the run of statements held back, the deferred ones, then the appended rows."""
        self.flush()
        self._send_deferred()
        if not self._appended:
            return
        appended, self._appended = self._appended, {}
        self._pipeline.close()  # COPY cannot run in a pipeline
        for (table, columns), rows in appended.items():
            statement = SQL("COPY {} ({}) FROM STDIN").format(
                Identifier(table), SQL(", ").join(map(Identifier, columns))
            )
            with self._connection.cursor().copy(statement) as copy:
                for row in rows:
                    copy.write_row(row)
        self._pipeline.enter_context(self._connection.pipeline())

    def _send_deferred(self) -> None:
        by_sql: dict[str, list[Any]] = {}
        for sql, params in self._deferred.values():
            by_sql.setdefault(sql, []).append(_called(params))
        for channel, payloads in self._notifications.items():
            by_sql.setdefault(_NOTIFY_ALL, []).append((channel, list(payloads)))
        self._deferred, self._notifications = {}, {}
        for sql, params_seq in by_sql.items():
            self.executemany(sql, params_seq)

    def flush(self) -> None:
        """Sends the run of statements held back."""
        if not self._run:
            return
        self._last = self._connection.cursor()
        if len(self._run) == 1:
            self._last.execute(self._run_sql, self._run[0])
        else:
            self._last.executemany(self._run_sql, self._run)
        self._run_sql, self._run = None, []

    def fetchone(self) -> Any:
        self.flush()
        assert self._last is not None, "fetch before any statement"
        return self._last.fetchone()

    def fetchall(self) -> list[Any]:
        self.flush()
        assert self._last is not None, "fetch before any statement"
        return self._last.fetchall()


_NOTIFY_ALL = "SELECT pg_notify(%s, payload) FROM unnest(%s::text[]) AS payload"


def _called(params: Params) -> Any:
    return params() if callable(params) else params


def _is_read(query: str) -> bool:
    return query.lstrip()[:6].upper() == "SELECT"
