"""The id token registry as operators read it."""

from __future__ import annotations

from typing import Any

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import Tracking
from eventsourcing.projection import Projection
from eventsourcing.utils import get_topic

from domain.id_tokens import IdToken
from projections.base import SqlView


class IdTokensView(SqlView):
    tables = (
        """CREATE TABLE IF NOT EXISTS id_tokens (
            token_uuid uuid PRIMARY KEY,
            id_token text NOT NULL UNIQUE,
            token_type text, parent_id_token text, group_id_token text,
            expires_at timestamptz,
            blocked boolean NOT NULL DEFAULT false,
            registered_by text NOT NULL,
            registered_at timestamptz NOT NULL,
            updated_by text NOT NULL,
            updated_at timestamptz NOT NULL)""",
    )


_REGISTER = """
INSERT INTO id_tokens (token_uuid, id_token, token_type, parent_id_token, group_id_token,
    expires_at, registered_by, registered_at, updated_by, updated_at)
VALUES (%(id)s, %(token)s, %(type)s, %(parent)s, %(group)s, %(expires)s, %(by)s, %(at)s,
    %(by)s, %(at)s)"""


class IdTokensProjection(Projection[IdTokensView]):
    name = "id_tokens"
    topics = tuple(
        get_topic(cls)
        for cls in (IdToken.Registered, IdToken.Blocked, IdToken.Unblocked, IdToken.ExpirySet)
    )

    @singledispatchmethod
    def process_event(self, event: Any, tracking: Tracking) -> None:
        self.view.record(tracking, [])

    @process_event.register
    def _(self, event: IdToken.Registered, tracking: Tracking) -> None:
        values = {
            "id": event.originator_id,
            "token": event.id_token,
            "type": event.token_type,
            "parent": event.parent_id_token,
            "group": event.group_id_token,
            "expires": event.expires_at,
            "by": event.registered_by,
            "at": event.timestamp,
        }
        self.view.record(tracking, [(_REGISTER, values)])

    @process_event.register
    def _(self, event: IdToken.Blocked, tracking: Tracking) -> None:
        self._change(event, tracking, "blocked = true")

    @process_event.register
    def _(self, event: IdToken.Unblocked, tracking: Tracking) -> None:
        self._change(event, tracking, "blocked = false")

    @process_event.register
    def _(self, event: IdToken.ExpirySet, tracking: Tracking) -> None:
        self._change(event, tracking, "expires_at = %(expires)s", expires=event.expires_at)

    def _change(self, event: Any, tracking: Tracking, columns: str, **values: Any) -> None:
        sql = (
            f"UPDATE id_tokens SET {columns}, updated_by = %(by)s, updated_at = %(at)s "
            "WHERE token_uuid = %(id)s"
        )
        params = {"id": event.originator_id, "by": event.by, "at": event.timestamp, **values}
        self.view.record(tracking, [(sql, params)])
