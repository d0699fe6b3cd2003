"""The stored events are immutable at the database level; transaction numbers are unique."""

from __future__ import annotations

import psycopg
import pytest
from ocpp.v16 import call

from adapters.postgres import NUMBER_BLOCK, NUMBER_SEQUENCE, open_store
from tests.support import ServerProcess, eventually, station16, stored_events


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE csms_events SET topic = 'tampered'",
        "DELETE FROM csms_events",
        "TRUNCATE csms_events",
    ],
)
async def test_the_store_refuses_to_change_or_delete_events(
    shared_server: ServerProcess, statement: str
) -> None:
    async with station16(shared_server, "CP-IMMUTABLE") as cp:
        await cp.call(call.BootNotification(charge_point_vendor="A", charge_point_model="B"))
    assert shared_server.database_url
    url = shared_server.database_url
    await eventually(lambda: stored_events(url, "CP-IMMUTABLE", "Disconnected"), bool)
    with psycopg.connect(shared_server.database_url) as conn:
        before = conn.execute("SELECT count(*), max(notification_id) FROM csms_events").fetchone()
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="immutable"):
            conn.execute(statement)
        conn.rollback()
        after = conn.execute("SELECT count(*), max(notification_id) FROM csms_events").fetchone()
    assert before == after and before is not None and before[0] > 0


def test_transaction_numbers_are_unique_across_processes_and_taken_in_blocks(
    database_url: str,
) -> None:
    first, second = open_store(database_url), open_store(database_url)
    try:
        numbers = []
        for _ in range(NUMBER_BLOCK + 10):  # each store runs past its first block
            numbers += [first.unit_of_work().allocate_number()]
            numbers += [second.unit_of_work().allocate_number()]
        third = open_store(database_url)  # a process started later
        numbers += [third.unit_of_work().allocate_number()]
        third.close()
    finally:
        first.close()
        second.close()
    assert len(set(numbers)) == len(numbers), "no number given twice"
    with psycopg.connect(database_url) as conn:
        taken = conn.execute(f"SELECT last_value FROM {NUMBER_SEQUENCE}").fetchone()
    assert taken == (5 * NUMBER_BLOCK,), "two blocks each, one for the third: a trip a block"
