"""A node's mirror of the station credentials: a change it cannot read back at once still
comes into force, once the node can read it."""

from __future__ import annotations

import asyncio
import base64
import logging

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from adapters.station_credentials import (
    TABLE_SQL,
    StationCredentials,
    Verdict,
    generate_password,
    register,
)

PASSWORD = generate_password()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def test_a_change_read_back_too_late_still_comes_into_force(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        register(conn, "CP-EARLIER", PASSWORD)
    pool = AsyncConnectionPool(database_url, min_size=1, max_size=1, open=False)
    await pool.open()
    mirror = StationCredentials(pool, accept_unknown=False)
    later = asyncio.Event()  # set when the mirror takes in CP-LATER's credentials
    mirror.on_change = lambda station_id: later.set() if station_id == "CP-LATER" else None
    try:
        mirror.listening()
        await mirror.ready()
        with psycopg.connect(database_url, autocommit=True) as conn:
            register(conn, "CP-LATER", PASSWORD)
        admitted = ("CP-LATER", basic("CP-LATER", PASSWORD), False)
        async with pool.connection():  # the node's only connection is busy: no read can start
            with pytest.raises(TimeoutError):
                await mirror.refresh("CP-LATER", within=0.2)
            assert mirror.check(*admitted) is Verdict.UNKNOWN
        # The caller gave up, not the reading: it goes on once a connection is free.
        await asyncio.wait_for(later.wait(), 5)
        assert mirror.check(*admitted) is Verdict.ADMITTED
    finally:
        await pool.close()


async def test_a_node_waits_for_the_credentials_as_long_as_they_are_locked(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """No station comes in before the credentials are known: a start waits for them, saying so."""
    pool = AsyncConnectionPool(database_url, min_size=1, max_size=1, open=False)
    await pool.open()
    mirror = StationCredentials(pool, accept_unknown=False)
    try:
        with psycopg.connect(database_url) as locker:
            locker.execute(TABLE_SQL)
            locker.execute("LOCK TABLE station_credentials IN ACCESS EXCLUSIVE MODE")
            mirror.listening()
            ready = asyncio.ensure_future(mirror.ready(report_every=0.1))
            with caplog.at_level(logging.WARNING, "adapters.station_credentials"):
                await asyncio.sleep(0.5)
            assert not ready.done()
            assert "still reading the station credentials" in caplog.text
        await asyncio.wait_for(ready, 5)  # the lock is gone with its transaction
    finally:
        await pool.close()
