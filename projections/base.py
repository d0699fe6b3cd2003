"""A view whose rows and tracking position are written in one PostgreSQL transaction."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any, NamedTuple, Protocol, cast, runtime_checkable
from uuid import UUID

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from psycopg import Connection, Cursor
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Composable, Composed, Identifier, Placeholder

Statement = tuple[str, dict[str, Any]]
Work = Callable[[Cursor[Any]], None]
# A statement's parameters, or a function that gives them when the statement is sent.
Params = Any | Callable[[], Any]
# The column, or columns, of the key a row is written whole by.
Key = str | tuple[str, ...]
# An aggregate's stored events before a version, oldest first: given to a view by whoever runs
# its projection, for what the view does not keep.
History = Callable[[UUID, int], Sequence[Any]]


class ParallelRebuild(NamedTuple):
    """Says that a projection may be rebuilt by several processes at once (its class attribute
    `parallel_rebuild`).

    Each process takes a share of the aggregates and applies their events in order, which
    gives the projection's own result only if what it makes of one aggregate's events never
    depends on another's. Events of `shared_topics` are the exception (a tariff prices every
    session): one process applies each, while the others wait, and then every process forgets
    what it kept, so that it reads that back from the tables.
    """

    shared_topics: tuple[str, ...] = ()


@runtime_checkable
class AppliedInStore(Protocol):
    """A projection that PostgreSQL applies from the stored events itself, a batch with one
    statement, instead of one decoded event at a time."""

    def apply_in_store(self, events: str, params: Any, tracking_name: str) -> tuple[int, int]:
        """Applies the events that `events` (a SELECT, with `params`) chooses, in the view's
        batch; returns how many, and the last one's notification id (0 if none)."""
        ...


class SqlView(PostgresTrackingRecorder):
    """Subclasses list their DDL in `tables`."""

    tables: Sequence[str] = ()
    # Where unqualified table names resolve; set to build the view in another schema.
    search_path: str | None = None
    # The store's history of an aggregate, set by whoever runs the projection.
    history: History | None = None

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        self.sql_create_statements.extend(Composed([SQL(ddl)]) for ddl in self.tables)  # type: ignore[arg-type]
        self._batch: _CursorPerStatement | None = None
        self._batch_tracking: Tracking | None = None
        # What the projection read or wrote, kept so that the next events need not read it
        # again. It dies with the view: a restart or a rebuild starts from the tables.
        self.kept: Kept = Kept()
        self._catalog = _Catalog()

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
            self._catalog.forget_staging()
            raise

    @contextmanager
    def _pipelined_transaction(self) -> Iterator[_CursorPerStatement]:
        with (
            self.datastore.transaction(commit=True) as cursor,
            _CursorPerStatement(cursor.connection, self._catalog) as statements,
        ):
            # In a pipeline a statement waits for no answer; only a read waits, for its own.
            self._begin(cast(Cursor[Any], statements))
            yield statements
            statements.flush_all()

    def write_row(
        self, cursor: Cursor[Any], table: str, key_columns: Key, key: Hashable, row: Params
    ) -> None:
        """Writes a row whole: inserts it, or replaces the row with the same `key_columns` (a
        column, or several: a primary or unique key).

        In a batch, only the last write of a row is sent, before the batch's next read or at
        its end, with the batch's other rows of the table in one COPY; outside a batch, now.
        `row` (a dict of every column to set, `key` its key) may be a function that gives it,
        called when the row is sent, so that work a later write makes useless is not done.
        """
        if self._batch is None:
            values = _called(row)
            cursor.execute(_upsert(table, key_columns, tuple(values)), values)
        else:
            self._batch.write_row(table, key_columns, key, row)

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

    def record_in_store(
        self, tracking_name: str, statement: Composable, params: Any
    ) -> tuple[int, int]:
        """Runs a statement that applies events inside PostgreSQL, in a batch, and moves the
        tracking position to the last of them; returns how many it applied, and the last one's
        notification id (0 if none).

        The statement returns one row: `applied`, how many events, and `last`, the last one's
        notification id (NULL if none).
        """
        assert self._batch is not None, "events are applied in the store only in a batch"
        found = self._batch.execute(statement, params).fetchone()
        if not found["applied"]:
            return 0, 0
        self._batch_tracking = Tracking(tracking_name, found["last"])
        return int(found["applied"]), int(found["last"])

    def _begin(self, cursor: Cursor[Any]) -> None:
        cursor.execute("SET LOCAL synchronous_commit = off")  # a view can be rebuilt
        if self.search_path:
            cursor.execute(SQL("SET LOCAL search_path TO {}").format(Identifier(self.search_path)))


Row = dict[str, Any]


class WholeRows:
    """A table's rows by their key, kept in the view's memory once read or written, each
    written whole: once per batch however many of the batch's events change it, so the further
    behind a view is (the larger its batches), the less each event costs. Subclasses name the
    table and its key column."""

    table: str
    key_column: str

    def __init__(self, view: SqlView, cursor: Cursor[Any]) -> None:
        self.view = view
        self.cursor = cursor

    def keep(self, row: Row) -> Row:
        """Keeps a row made in memory (a new one); write it to store it."""
        self.view.kept[(self.table, row[self.key_column])] = row
        return row

    def get(self, key: Any) -> Row | None:
        row: Row | None = self.view.kept.get((self.table, key))
        if row is None:
            # Table and column are our own constants, not input.
            self.cursor.execute(
                f'SELECT * FROM "{self.table}" WHERE "{self.key_column}" = %s', (key,)
            )
            row = self.cursor.fetchone()
            if row is not None:
                self.keep(row)
        return row

    def write(self, row: Row, params: Params | None = None) -> None:
        """Writes the row as it is when sent (or as `params`, a function, then makes it)."""
        key = row[self.key_column]
        written = row if params is None else params
        self.view.write_row(self.cursor, self.table, self.key_column, key, written)


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


# Rows moved out of a staging table (each leaving a dead row behind) before it is truncated.
# PostgreSQL truncates a session's ON COMMIT DELETE ROWS tables at every commit that touched a
# temporary table: about 300 us of its CPU a table a commit, where a commit moves tens of rows.
STAGED_BEFORE_TRUNCATE = 2_000


class _Catalog:
    """What a view knows of its tables: their columns' types, for binary COPY, and which
    staging tables exist on which connection (a failed batch may have undone one), with the
    rows each has staged since it was last truncated."""

    def __init__(self) -> None:
        self._types: dict[str, dict[str, int]] = {}
        self._staged: dict[tuple[int, str], int] = {}

    def types(self, connection: Connection[Any], table: str, columns: Sequence[str]) -> list[int]:
        known = self._types.get(table)
        if known is None:
            cursor = connection.cursor(row_factory=tuple_row).execute(
                "SELECT attname, atttypid::int FROM pg_attribute "
                "WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped",
                (table,),
            )
            known = self._types[table] = dict(cursor.fetchall())
        if missing := [name for name in columns if name not in known]:
            # A view writing columns its DDL lacks, or a table an older version made.
            raise LookupError(f"table {table} has no column {', '.join(missing)}")
        return [known[name] for name in columns]

    def staging(self, connection: Connection[Any], table: str) -> str:
        """The name of a temporary table of `table`'s columns, made the first time."""
        staging = f"staged_{table}"
        key = (connection.info.backend_pid, table)
        if key not in self._staged:
            # Without the table's constraints: a row is checked where it lands.
            connection.execute(
                SQL(
                    "CREATE TEMPORARY TABLE IF NOT EXISTS {} AS SELECT * FROM {} WITH NO DATA"
                ).format(Identifier(staging), Identifier(table))
            )
            self._staged[key] = 0
        return staging

    def staged(self, connection: Connection[Any], table: str, rows: int) -> bool:
        """Counts rows staged for `table` (and moved out); True when its staging table's dead
        rows are now to be truncated."""
        key = (connection.info.backend_pid, table)
        self._staged[key] += rows
        if self._staged[key] < STAGED_BEFORE_TRUNCATE:
            return False
        self._staged[key] = 0
        return True

    def forget_staging(self) -> None:
        self._staged.clear()


class _CursorPerStatement:
    """Runs each statement on a cursor of its own, and runs of one statement as one.

    In a pipeline, a cursor that ran several statements fetches the first of their results, not
    the last; with one cursor per statement, a read always gets its own statement's rows.
    Consecutive executions of the same SQL are sent together (`executemany`), in order, before
    anything else, so the effect is that of running them one by one. Rows written whole and
    appended rows wait for the next read (a SELECT, or any statement not given as text) or the
    end; they are then copied in, a table's at once, and notifications are sent with one
    statement a channel. A row is read when sent, not when given: what a caller changes in it
    meanwhile is sent too.
    """

    def __init__(self, connection: Connection[Any], catalog: _Catalog) -> None:
        self._connection = connection
        self._catalog = catalog
        self._last: Cursor[Any] | None = None
        self._run_sql: Any = None
        self._run: list[Any] = []
        self._rows: dict[tuple[str, Hashable], tuple[Key, Params]] = {}
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

    def write_row(self, table: str, key_columns: Key, key: Hashable, row: Params) -> None:
        self._rows[(table, key)] = (key_columns, row)  # replaces what it wrote before

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
        """Sends the run of statements held back, the rows written whole and appended, and the
        notifications."""
        self.flush()
        if self._rows or self._appended:
            self._copy_rows()
        if self._notifications:
            notifications, self._notifications = self._notifications, {}
            self.executemany(_NOTIFY_ALL, [(c, list(p)) for c, p in notifications.items()])

    def _copy_rows(self) -> None:
        """Copies rows in, in binary: a row costs a third of its INSERT's client CPU."""
        written: dict[tuple[str, Key, tuple[str, ...]], list[Sequence[Any]]] = {}
        for (table, _), (key_columns, params) in self._rows.items():
            row = _called(params)
            written.setdefault((table, key_columns, tuple(row)), []).append(tuple(row.values()))
        appended, self._rows, self._appended = self._appended, {}, {}
        statements = []  # each table's upsert, and now and then its staging table's truncation
        self._pipeline.close()  # COPY cannot run in a pipeline
        for (table, key_columns, columns), rows in written.items():
            staging = self._catalog.staging(self._connection, table)
            self._copy(table, staging, columns, rows)
            statements.append(_upsert(table, key_columns, columns, staging))
            if self._catalog.staged(self._connection, table, len(rows)):
                statements.append(SQL("TRUNCATE {}").format(Identifier(staging)))
        for (table, columns), rows in appended.items():
            self._copy(table, table, columns, rows)
        self._pipeline.enter_context(self._connection.pipeline())
        for statement in statements:
            self._last = self._connection.cursor()
            self._last.execute(statement)

    def _copy(
        self, table: str, into: str, columns: Sequence[str], rows: list[Sequence[Any]]
    ) -> None:
        statement = SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            Identifier(into), SQL(", ").join(map(Identifier, columns))
        )
        types = self._catalog.types(self._connection, table, columns)
        with self._connection.cursor().copy(statement) as copy:
            copy.set_types(types)
            for row in rows:
                copy.write_row(row)

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


def _upsert(
    table: str, key_columns: Key, columns: Sequence[str], staging: str | None = None
) -> Composed:
    """Inserts the row, or sets every column of the one with its key; from `staging` (moving
    its rows), or from the statement's parameters (named as its columns)."""
    names = SQL(", ").join(map(Identifier, columns))
    moved: Composable = SQL("")
    if staging is None:
        source = SQL("VALUES ({})").format(SQL(", ").join(map(Placeholder, columns)))
    else:
        source = SQL("SELECT {} FROM moved").format(names)
        moved = SQL("WITH moved AS (DELETE FROM {} RETURNING *) ").format(Identifier(staging))
    keys = (key_columns,) if isinstance(key_columns, str) else key_columns
    changed = [name for name in columns if name not in keys]
    action = (
        SQL("DO UPDATE SET {}").format(
            SQL(", ").join(SQL("{0} = EXCLUDED.{0}").format(Identifier(name)) for name in changed)
        )
        if changed
        else SQL("DO NOTHING")
    )
    return SQL("{}INSERT INTO {} ({}) {} ON CONFLICT ({}) {}").format(
        moved, Identifier(table), names, source, SQL(", ").join(map(Identifier, keys)), action
    )


_NOTIFY_ALL = "SELECT pg_notify(%s, payload) FROM unnest(%s::text[]) AS payload"


def _called(params: Params) -> Any:
    return params() if callable(params) else params


def _is_read(query: str) -> bool:
    return query.lstrip()[:6].upper() == "SELECT"
