"""Station-numbered transactions in a read model: the fold of each one's reported events.

The summary uses the domain's own rules over the set of events folded so far, so a view built
this way does not depend on the order the events arrived in. A fold is kept in the view's
memory; one it forgot (or never had, after a restart) is made again from the transaction's
events in the store, those before the event being applied, so the view keeps no copy of them.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any
from uuid import UUID

from domain.transaction import REPORT_FIELDS, Transaction
from domain.transaction_events import Fold, ReportedEvent
from projections.base import History


def no_reports_yet(key: UUID, kept: MutableMapping[Any, Any]) -> None:
    """Notes that a transaction just opened has no reports, so its first one reads none."""
    kept[_memo(key)] = Fold()


def fold_reported(
    event: Transaction.EventReported, kept: MutableMapping[Any, Any], history: History | None
) -> Fold:
    """The transaction's fold, with the event in it, kept in `kept`."""
    key: UUID = event.originator_id
    memo = _memo(key)
    fold: Fold | None = kept.get(memo)
    if fold is None:
        if history is None:
            raise RuntimeError("the view has no history to read a transaction's events from")
        fold = Fold()
        for earlier in history(key, event.originator_version):
            if isinstance(earlier, Transaction.EventReported):
                fold.add(_reported(earlier))
    if event.seq_no not in fold.seq_nos:  # the first report of a number stands
        fold.add(_reported(event))
    kept[memo] = fold
    return fold


def _reported(event: Transaction.EventReported) -> ReportedEvent:
    return ReportedEvent.of({name: getattr(event, name) for name in REPORT_FIELDS})


def _memo(key: UUID) -> tuple[str, UUID]:
    """Where a transaction's fold is kept in the projection's memory."""
    return ("fold", key)
