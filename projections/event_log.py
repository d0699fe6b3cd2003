"""The history as auditors read it: every event, with its aggregate and station.

Nothing is folded here: one row per stored event, at its position in the global sequence, so
history queries can filter (by station, aggregate, type, time) and page with stable cursors.

PostgreSQL applies each batch itself, with one statement: the rows come from the stored events'
JSON, which never passes through Python. A row holds what the history is searched by; what the
event says is read from the store when it is shown (`DATA`), not copied: a copy cost PostgreSQL
two fifths of the view's work. That JSON keeps times, decimals and ids as the event store's
transcoder wrote them (`{"_type_": "datetime_iso", "_data_": "..."}`); `readable` gives them as
text, as the history shows them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from eventsourcing.persistence import DatetimeAsISO, DecimalAsStr, Tracking, UUIDAsHex
from eventsourcing.projection import Projection
from psycopg.sql import SQL

from domain.service import CSMS
from projections.base import ParallelRebuild, SqlView


class EventLogView(SqlView):
    tables = (
        """CREATE TABLE IF NOT EXISTS event_log (
            position bigint PRIMARY KEY,
            aggregate_id uuid NOT NULL,
            aggregate_type text NOT NULL,
            version integer NOT NULL,
            event_type text NOT NULL,
            recorded_at timestamptz NOT NULL,
            station_id text,
            transaction_id text)""",
        # Written by earlier versions; the store holds it (DATA).
        "ALTER TABLE event_log DROP COLUMN IF EXISTS data",
        "CREATE INDEX IF NOT EXISTS event_log_by_station ON event_log (station_id, position)",
        # An aggregate's events are found by the store's own key (history by aggregate): an
        # index of the same here cost every event's insert a page of WAL after each checkpoint.
        "DROP INDEX IF EXISTS event_log_by_aggregate",
        "CREATE INDEX IF NOT EXISTS event_log_by_time ON event_log (recorded_at)",
        """CREATE TABLE IF NOT EXISTS event_log_aggregates (
            aggregate_id uuid PRIMARY KEY,
            station_id text,
            transaction_id text)""",
    )


# `{events}`: a SELECT of the events to apply, in order, with a notification's five columns.
# An event that names a station (a creation event does) is logged with it and its transaction
# key; any other with those of its aggregate's first event that named one, if that came before.
# The first naming is kept in event_log_aggregates: a batch's own inserts there are not visible
# to its other statements, so the batch's first namings are joined from `naming` as well. The
# store's bookkeeping (the time it recorded, the aggregate's class) has columns of its own.
_APPLY = """
WITH batch AS MATERIALIZED (
    SELECT notification_id, originator_id, originator_version, topic,
        convert_from(state, 'UTF8')::jsonb AS data
    FROM ({events}) AS chosen),
naming AS (
    SELECT DISTINCT ON (originator_id) originator_id, originator_version,
        data->>'station_id' AS station_id, data->>'transaction_key' AS transaction_id
    FROM batch WHERE data->>'station_id' IS NOT NULL
    ORDER BY originator_id, originator_version),
named AS (
    INSERT INTO event_log_aggregates (aggregate_id, station_id, transaction_id)
    SELECT originator_id, station_id, transaction_id FROM naming
    ON CONFLICT (aggregate_id) DO NOTHING),
types AS (
    SELECT topic, split_part(topic, ':', 2) AS qualname FROM batch GROUP BY topic),
logged AS (
    INSERT INTO event_log (position, aggregate_id, aggregate_type, version, event_type,
        recorded_at, station_id, transaction_id)
    SELECT e.notification_id, e.originator_id,
        CASE WHEN strpos(t.qualname, '.') > 0
            THEN regexp_replace(t.qualname, '\\.[^.]*$', '') ELSE '?' END,
        e.originator_version,
        regexp_replace(t.qualname, '^.*\\.', ''),
        (e.data->'timestamp'->>'_data_')::timestamptz,
        CASE WHEN e.data->>'station_id' IS NOT NULL THEN e.data->>'station_id'
            WHEN known.aggregate_id IS NOT NULL THEN known.station_id
            WHEN first.originator_version < e.originator_version THEN first.station_id END,
        CASE WHEN e.data->>'station_id' IS NOT NULL THEN e.data->>'transaction_key'
            WHEN known.aggregate_id IS NOT NULL THEN known.transaction_id
            WHEN first.originator_version < e.originator_version THEN first.transaction_id END
    FROM batch e
    JOIN types t ON t.topic = e.topic
    LEFT JOIN event_log_aggregates known ON known.aggregate_id = e.originator_id
    LEFT JOIN naming first ON first.originator_id = e.originator_id)
SELECT count(*) AS applied, max(notification_id) AS last FROM batch"""


# The store's table of events, named as `adapters.postgres` names it: after the application.
EVENTS_TABLE = f"{CSMS.name.lower()}_events"
# A logged event's data, from the store (`events`: its row there): its stored JSON less the
# store's bookkeeping, which has columns of its own.
DATA = "convert_from(events.state, 'UTF8')::jsonb - ARRAY['timestamp', 'originator_topic']"


class EventLogProjection(Projection[EventLogView]):
    name = "event_log"
    topics = ()  # every event
    # An event's row needs only its own aggregate's station, from that aggregate's events.
    parallel_rebuild = ParallelRebuild()

    def apply_in_store(self, events: str, params: Any, tracking_name: str) -> tuple[int, int]:
        """Applies the events `events` selects (a notification's columns, in order), in the
        view's batch; returns how many, and the last one's notification id (0 if none)."""
        statement = SQL(_APPLY).format(events=SQL(events))  # type: ignore[arg-type]
        return self.view.record_in_store(tracking_name, statement, params)

    def process_event(self, event: Any, tracking: Tracking) -> None:
        raise TypeError(
            "the event log is applied by PostgreSQL from the stored events, in batches "
            "(apply_in_store), not one decoded event at a time"
        )


# What the store's transcoder made of what JSON does not know, back as text, by its name.
_AS_TEXT: dict[str, Callable[[Any], Any]] = {
    UUIDAsHex.name: lambda data: str(UUID(data)),
    DatetimeAsISO.name: str,  # as isoformat() wrote it
    DecimalAsStr.name: str,  # every digit, as written
}


def readable(value: Any) -> Any:
    """An event's logged data with times, decimals and ids as text."""
    if isinstance(value, dict):
        if len(value) == 2 and "_type_" in value and "_data_" in value:
            as_text = _AS_TEXT.get(value["_type_"])
            if as_text is not None:
                return as_text(value["_data_"])
        return {name: readable(item) for name, item in value.items()}
    if isinstance(value, list):
        return [readable(item) for item in value]
    return value
