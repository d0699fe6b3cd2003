"""The event log shows an event's stored JSON with times, decimals and ids as text."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Transcoder
from hypothesis import given
from hypothesis import strategies as st

from domain.service import CSMS
from projections.event_log import readable

ZONES = st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5))])
TIMES = st.datetimes() | st.datetimes(timezones=ZONES)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
    TIMES,
    st.decimals(allow_nan=False, allow_infinity=False),
    st.uuids(),
)
NAMES = st.text().filter(lambda name: name not in ("_type_", "_data_"))
# Values shaped like events' state: names to scalars, lists and nested objects.
STATES = st.dictionaries(
    NAMES,
    st.recursive(
        SCALARS,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(NAMES, inner, max_size=4),
        max_leaves=20,
    ),
)


def _store_transcoder() -> Transcoder:
    """The transcoder the event store writes events' state with."""
    return CSMS({"PERSISTENCE_MODULE": "eventsourcing.popo"}).construct_transcoder()


def _as_text(value: Any) -> Any:
    """What JSON does not know, as the history shows it."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (Decimal, UUID)):
        return str(value)
    raise TypeError(type(value).__name__)


@given(STATES)
def test_what_the_log_shows_is_the_state_with_times_decimals_and_ids_as_text(
    state: dict[str, Any],
) -> None:
    stored = json.loads(_store_transcoder().encode(state))
    assert readable(stored) == json.loads(json.dumps(state, default=_as_text))


def test_an_unknown_transcoding_is_shown_as_stored() -> None:
    stored = {"at": {"_type_": "datetime_iso", "_data_": "2026-11-30T10:00:00+00:00"}}
    stored["other"] = {"_type_": "colour", "_data_": "red"}
    assert readable(stored) == {
        "at": "2026-11-30T10:00:00+00:00",
        "other": {"_type_": "colour", "_data_": "red"},
    }
