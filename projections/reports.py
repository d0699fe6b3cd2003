"""Station-numbered transactions in a read model: keep each event's reduced facts, summarise all.

The summary uses the domain's own rules over the set of events kept so far, so a view built
this way does not depend on the order the events arrived in.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any
from uuid import UUID

from psycopg import Cursor
from psycopg.types.json import Jsonb

from domain.transaction import REPORT_FIELDS, Transaction
from domain.transaction_events import Fold, ReportedEvent
from projections.base import append


def no_reports_yet(table: str, key: UUID, kept: MutableMapping[Any, Any]) -> None:
    """Notes that a transaction just opened has no reports, so its first one reads none."""
    kept[_memo(table, key)] = Fold()


def keep_reported(
    cursor: Cursor[Any],
    table: str,
    key_column: str,
    event: Transaction.EventReported,
    kept: MutableMapping[Any, Any],
) -> Fold:
    """Stores what the event says in `table` (keyed by `key_column`); returns the transaction's
    fold, with the event in it.

    The events of a transaction already read are found in `kept`, so each event costs one
    write, not a read of all the others.
    """
    reported = ReportedEvent.of({name: getattr(event, name) for name in REPORT_FIELDS})
    key: UUID = event.originator_id
    memo = _memo(table, key)
    fold: Fold | None = kept.get(memo)
    if fold is None:
        fold = Fold()
        # Table and column are our own constants, not input.
        cursor.execute(f'SELECT reported FROM "{table}" WHERE "{key_column}" = %s', (key,))
        for row in cursor.fetchall():
            fold.add(ReportedEvent.from_record(row["reported"]))
    if event.seq_no not in fold.seq_nos:  # the first report of a number stands
        fold.add(reported)
        row = (key, event.seq_no, Jsonb(reported.to_record()))
        append(cursor, table, (key_column, "seq_no", "reported"), row)
    kept[memo] = fold
    return fold


def _memo(table: str, key: UUID) -> tuple[str, str, UUID]:
    """Where a transaction's reports are kept in the projection's memory."""
    return ("reports", table, key)
