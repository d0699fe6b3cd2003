"""A node's mirror of the station credentials: a change it cannot read back at once still
comes into force, once the node can read it."""

from __future__ import annotations

import asyncio
import base64

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from adapters.station_credentials import StationCredentials, Verdict, generate_password, register

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
