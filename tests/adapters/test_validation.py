"""The compiled request schemas judge every payload as the `ocpp` package's validator does."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from ocpp.messages import get_validator

from adapters.ocpp.rpc import CALL, compiled_request_schema

# Values that are right for some fields and wrong for others, edge cases of each type included.
VALUES = st.one_of(
    st.sampled_from([0, 1, -1, 1.0, 1.5, True, None, 10**20, "", "Available", "NoError", "x"]),
    st.text(max_size=60),
    st.integers(),
    st.floats(allow_nan=False),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.sampled_from(["vendorId", "value", "y"]), st.text(max_size=5)),
)

# A valid payload of each action, to change a field or two of.
CASES: list[tuple[str, str, dict[str, Any]]] = [
    (
        "1.6",
        "StatusNotification",
        {"connectorId": 1, "errorCode": "NoError", "status": "Available"},
    ),
    (
        "1.6",
        "StartTransaction",
        {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": "x"},
    ),
    (
        "2.0.1",
        "StatusNotification",
        {"timestamp": "x", "connectorStatus": "Available", "evseId": 1, "connectorId": 1},
    ),
    (
        "2.0.1",
        "TransactionEvent",
        {
            "eventType": "Updated",
            "timestamp": "x",
            "triggerReason": "MeterValuePeriodic",
            "seqNo": 1,
            "transactionInfo": {"transactionId": "t"},
        },
    ),
]


def _verdicts(version: str, action: str, payload: dict[str, Any]) -> tuple[bool, bool]:
    try:
        compiled_request_schema(version, action)(payload)
        fast = True
    except Exception:
        fast = False
    slow = next(iter(get_validator(CALL, action, version).iter_errors(payload)), None) is None
    return fast, slow


@settings(max_examples=500, deadline=None)
@given(case=st.sampled_from(CASES), data=st.data())
def test_compiled_schemas_agree_with_the_ocpp_validator(
    case: tuple[str, str, dict[str, Any]], data: st.DataObject
) -> None:
    version, action, valid = case
    names = st.sampled_from([*valid, "info", "extra"])
    changes = data.draw(st.dictionaries(names, VALUES, max_size=2))
    dropped = data.draw(st.sets(st.sampled_from(list(valid)), max_size=1))
    payload = {k: v for k, v in (valid | changes).items() if k not in dropped}
    fast, slow = _verdicts(version, action, payload)
    assert fast == slow, payload


def test_an_integral_float_is_not_an_integer_in_any_version() -> None:
    status = {"timestamp": "x", "connectorStatus": "Available", "evseId": 1.0, "connectorId": 1}
    assert _verdicts("2.0.1", "StatusNotification", status) == (False, False)
