"""Remote commands as operators and auditors read them: who asked what, and what came of it."""

from __future__ import annotations

import json
from typing import Any

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking
from eventsourcing.projection import Projection
from eventsourcing.utils import get_topic
from psycopg.types.json import Jsonb

from domain.remote import CommandState, RemoteCommand
from projections.base import SqlView, Statement


class RemoteCommandsView(SqlView):
    tables = (
        """CREATE TABLE IF NOT EXISTS remote_commands (
            command_id uuid PRIMARY KEY,
            station_id text NOT NULL,
            operation text NOT NULL,
            arguments jsonb NOT NULL,
            requested_by text NOT NULL,
            requested_at timestamptz NOT NULL,
            state text NOT NULL,
            node text, action text, message_id text, sent_at timestamptz,
            status text, response jsonb, failure text, detail text,
            settled_at timestamptz)""",
        """CREATE INDEX IF NOT EXISTS remote_commands_by_station
            ON remote_commands (station_id, requested_at DESC)""",
    )


_INSERT = """
INSERT INTO remote_commands (command_id, station_id, operation, arguments, requested_by,
    requested_at, state)
VALUES (%(id)s, %(station_id)s, %(operation)s, %(arguments)s, %(by)s, %(at)s, %(state)s)"""


def _update(columns: str, event: Any, **values: Any) -> Statement:
    return (
        f"UPDATE remote_commands SET {columns} WHERE command_id = %(id)s",
        {"id": event.originator_id, "at": event.timestamp, **values},
    )


def _json(value: Any) -> Jsonb:
    """Arguments and answers may hold Decimals (limits, meter values): kept as JSON numbers."""
    return Jsonb(value, dumps=lambda v: json.dumps(v, default=float))


class RemoteCommandsProjection(Projection[RemoteCommandsView]):
    name = "remote_commands"
    topics = tuple(
        get_topic(cls)
        for cls in (
            RemoteCommand.Requested,
            RemoteCommand.Sent,
            RemoteCommand.Answered,
            RemoteCommand.Failed,
        )
    )

    @singledispatchmethod
    def process_event(self, event: Any, tracking: Tracking) -> None:
        self.view.record(tracking, [])

    @process_event.register
    def _(self, event: RemoteCommand.Requested, tracking: Tracking) -> None:
        values = {
            "id": event.originator_id,
            "station_id": event.station_id,
            "operation": event.operation,
            "arguments": _json(event.arguments),
            "by": event.requested_by,
            "at": event.timestamp,
            "state": CommandState.REQUESTED.value,
        }
        self.view.record(tracking, [(_INSERT, values)])

    @process_event.register
    def _(self, event: RemoteCommand.Sent, tracking: Tracking) -> None:
        statement = _update(
            "state = %(state)s, node = %(node)s, action = %(action)s, "
            "message_id = %(message_id)s, sent_at = %(at)s",
            event,
            state=CommandState.SENT.value,
            node=event.node,
            action=event.action,
            message_id=event.message_id,
        )
        self.view.record(tracking, [statement])

    @process_event.register
    def _(self, event: RemoteCommand.Answered, tracking: Tracking) -> None:
        statement = _update(
            "state = %(state)s, status = %(status)s, response = %(response)s, settled_at = %(at)s",
            event,
            state=CommandState.ANSWERED.value,
            status=event.status,
            response=_json(event.response),
        )
        self.view.record(tracking, [statement])

    @process_event.register
    def _(self, event: RemoteCommand.Failed, tracking: Tracking) -> None:
        statement = _update(
            "state = %(state)s, failure = %(failure)s, detail = %(detail)s, settled_at = %(at)s",
            event,
            state=CommandState.FAILED.value,
            failure=event.reason,
            detail=event.detail,
        )
        self.view.record(tracking, [statement])
