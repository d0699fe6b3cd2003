"""orjson writes the event log's JSON as the standard library did."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

from hypothesis import given
from hypothesis import strategies as st

from projections.event_log import _AS_JSON, _as_json

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
# Values shaped like events' state: names to scalars, lists and nested objects.
STATES = st.dictionaries(
    st.text(),
    st.recursive(
        SCALARS,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
        max_leaves=20,
    ),
)


@given(STATES)
def test_the_event_logs_json_says_what_the_standard_librarys_said(state: dict[str, Any]) -> None:
    assert json.loads(_as_json(state)) == json.loads(_AS_JSON(state))


def test_the_event_logs_json_takes_integers_orjson_refuses() -> None:
    data = {"n": 2**70, "at": datetime(2026, 11, 29, 10, 0, tzinfo=UTC), "wh": Decimal("1.50")}
    written = json.loads(_as_json(data))
    assert written == {"n": 2**70, "at": "2026-11-29T10:00:00+00:00", "wh": "1.50"}
    assert written == json.loads(_AS_JSON(data))
    assert json.loads(_as_json({"id": UUID(int=1)})) == {"id": str(UUID(int=1))}
