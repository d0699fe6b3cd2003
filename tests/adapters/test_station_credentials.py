"""Which Authorization headers let a registered station in: only its identity and password."""

from __future__ import annotations

import base64
import hashlib
import secrets

from hypothesis import given
from hypothesis import strategies as st

from adapters.station_credentials import Credentials, Verdict, decide, generate_password

PASSWORD = generate_password()
SALT = secrets.token_bytes(16)


def credentials_of(password: str) -> Credentials:
    return Credentials(SALT, hashlib.sha256(SALT + password.encode()).digest())


def basic(user: str | bytes, password: str | bytes) -> str:
    raw = (user.encode() if isinstance(user, str) else user) + b":"
    raw += password.encode() if isinstance(password, str) else password
    return "Basic " + base64.b64encode(raw).decode()


REGISTERED = credentials_of(PASSWORD)


def test_the_station_with_its_password_is_admitted() -> None:
    assert decide("CP-1", REGISTERED, basic("CP-1", PASSWORD), False) is Verdict.ADMITTED
    assert decide("CP-1", REGISTERED, "basic " + basic("CP-1", PASSWORD)[6:], False) is (
        Verdict.ADMITTED
    )


def test_a_wrong_password_or_another_name_is_refused() -> None:
    assert decide("CP-1", REGISTERED, basic("CP-1", PASSWORD + "x"), True) is (
        Verdict.WRONG_PASSWORD
    )
    assert decide("CP-1", REGISTERED, basic("CP-2", PASSWORD), True) is Verdict.WRONG_PASSWORD


def test_no_usable_header_is_no_password() -> None:
    for header in (None, "", "Bearer abc", "Basic", "Basic !!!", "Basic " + "QUJD"):
        assert decide("CP-1", REGISTERED, header, True) is Verdict.NO_PASSWORD, header


def test_bytes_that_are_not_utf8_are_compared_as_sent() -> None:
    raw = b"\xff\xfe" + b"0123456789abcdef"
    stored = Credentials(SALT, hashlib.sha256(SALT + raw).digest())
    assert decide("CP-1", stored, basic("CP-1", raw), False) is Verdict.ADMITTED
    assert decide("CP-1", stored, basic("CP-1", raw[1:]), False) is Verdict.WRONG_PASSWORD


def test_unregistered_stations_follow_the_policy_and_passwordless_ones_need_none() -> None:
    assert decide("CP-9", None, None, accept_unknown=True) is Verdict.ADMITTED
    assert decide("CP-9", None, basic("CP-9", "whatever"), False) is Verdict.UNKNOWN
    assert decide("CP-1", Credentials(None, None), None, False) is Verdict.ADMITTED


@given(st.text(max_size=200))
def test_any_header_is_judged_without_error_and_admits_nobody_by_chance(header: str) -> None:
    assert decide("CP-1", REGISTERED, header, True) is not Verdict.ADMITTED


@given(st.binary(max_size=60))
def test_any_basic_credentials_but_the_right_ones_are_refused(password: bytes) -> None:
    verdict = decide("CP-1", REGISTERED, basic("CP-1", password), True)
    assert (verdict is Verdict.ADMITTED) == (password == PASSWORD.encode())
