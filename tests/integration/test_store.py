"""The stored events are immutable at the database level, their ids are visible in order, and
transaction numbers are unique."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from uuid import NAMESPACE_URL, uuid5

import psycopg
import pytest
from eventsourcing.persistence import StoredEvent
from ocpp.v16 import call

from adapters import audit
from adapters.postgres import NUMBER_BLOCK, NUMBER_SEQUENCE, open_store
from domain.service import CSMS
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


async def test_a_vacuum_of_the_events_table_does_not_hold_up_the_writers(
    shared_server: ServerProcess,
) -> None:
    """A vacuum's lock on the events table (autovacuum takes it unasked) leaves writers be."""
    assert shared_server.database_url
    with psycopg.connect(shared_server.database_url) as vacuum:
        vacuum.execute("LOCK TABLE csms_events IN SHARE UPDATE EXCLUSIVE MODE")  # as VACUUM does
        async with station16(shared_server, "CP-VACUUM") as cp, asyncio.timeout(5):
            answer = await cp.call(
                call.BootNotification(charge_point_vendor="A", charge_point_model="B")
            )
        vacuum.rollback()
    assert answer.status == "Accepted"


def test_an_event_id_once_visible_has_every_smaller_one_visible(database_url: str) -> None:
    """Writers in several processes commit in the order of their events' ids, so a reader that has
    read up to the largest id it sees never finds a smaller one appear later."""
    stores = [open_store(database_url) for _ in range(3)]

    def write(store: CSMS, name: str) -> None:
        for batch in range(200):
            events = [
                StoredEvent(uuid5(NAMESPACE_URL, f"{name}-{batch}-{n}"), 1, "test:Written", b"{}")
                for n in range(3)
            ]
            store.recorder.insert_events(events)

    writers = [
        threading.Thread(target=write, args=(store, str(n))) for n, store in enumerate(stores)
    ]
    late: list[int] = []
    try:
        for writer in writers:
            writer.start()
        with psycopg.connect(database_url, autocommit=True) as reader:
            seen: set[int] = set()
            read_up_to = 0
            while any(writer.is_alive() for writer in writers):
                row = reader.execute("SELECT max(notification_id) FROM csms_events").fetchone()
                last = row[0] if row and row[0] is not None else 0
                ids = {
                    id_
                    for (id_,) in reader.execute(
                        "SELECT notification_id FROM csms_events WHERE notification_id <= %s",
                        (last,),
                    )
                }
                late += sorted(id_ for id_ in ids - seen if id_ <= read_up_to)
                seen, read_up_to = ids, last
        for writer in writers:
            writer.join()
    finally:
        for store in stores:
            store.close()
    assert read_up_to > 0, "the reader saw the writers at work"
    assert late == [], "events appeared below an id the reader had already read up to"
    # Batches of three from three processes, interleaved: each chained to the one before it.
    verdict = audit.verify(database_url)
    assert (verdict.checked, verdict.problem) == (1800, None)


def test_an_event_rolled_back_to_a_savepoint_is_not_chained_to(database_url: str) -> None:
    """Within a transaction, each event is chained to the one it wrote last (kept in a setting
    local to the transaction), but not to one whose savepoint was rolled back."""
    open_store(database_url).close()  # the schema
    written = [StoredEvent(uuid5(NAMESPACE_URL, name), 1, "test:Written", b"{}") for name in "ABCD"]

    def insert(conn: psycopg.Connection[tuple[object, ...]], event: StoredEvent) -> None:
        conn.execute(
            "SELECT csms_insert_events(%s, %s, %s, %s)",
            ([event.originator_id], [1], [event.topic], [event.state]),
        )

    with psycopg.connect(database_url) as conn:
        insert(conn, written[0])
        with contextlib.suppress(RuntimeError), conn.transaction():
            insert(conn, written[1])
            raise RuntimeError("rolled back to the savepoint")
        insert(conn, written[2])
        conn.commit()
        insert(conn, written[3])  # the next transaction looks the previous event up again
        conn.commit()
    verdict = audit.verify(database_url)
    assert (verdict.checked, verdict.problem) == (3, None)
