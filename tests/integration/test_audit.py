"""Auditors prove the history unaltered: `csms audit verify` passes on an untouched store and
names the first event a superuser changed, removed or inserted behind the store's back."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from tests.stations import connect
from tests.support import ServerProcess


@pytest.fixture(scope="module")
def history(
    new_database: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("audit") / "server.log"
    server = ServerProcess(log, new_database()).start()
    yield server
    server.stop()


async def scripted(server: ServerProcess) -> None:
    for protocol in ("ocpp1.6", "ocpp2.0.1"):
        async with connect(server, f"CS-AUDIT-{protocol}", protocol) as station:
            await station.boot("Acme", "One", "S-1", "1.0")
            await station.status(1, 1, "Available", "2026-11-25T09:00:00Z")
            tx = await station.start(1, "TAG-A", 0, "2026-11-25T09:01:00Z")
            await station.meter(tx, 1, "2026-11-25T09:10:00Z", "900", "Wh")
            await station.stop(tx, 1, 1800, "2026-11-25T09:20:00Z", "Local", None)


def verify(server: ServerProcess) -> tuple[int, str]:
    assert server.database_url
    done = subprocess.run(
        [sys.executable, "-m", "adapters.cli", "audit", "verify",
         "--database-url", server.database_url],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
    )  # fmt: skip
    return done.returncode, done.stdout


class Superuser:
    """Someone with every right on the database, bypassing its triggers."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.conn.execute("SET session_replication_role = replica")

    def row(self, notification_id: int) -> dict[str, Any]:
        cursor = self.conn.execute(
            "SELECT * FROM csms_events WHERE notification_id = %s", (notification_id,)
        )
        names = [column.name for column in cursor.description or ()]
        found = cursor.fetchone()
        assert found is not None
        return dict(zip(names, found, strict=True))

    def put(self, row: dict[str, Any]) -> None:
        names = ", ".join(row)
        marks = ", ".join(["%s"] * len(row))
        self.conn.execute(f"INSERT INTO csms_events ({names}) VALUES ({marks})", list(row.values()))

    def execute(self, sql: str, *params: Any) -> None:
        self.conn.execute(sql, params)

    def next_version(self, row: dict[str, Any]) -> int:
        found = self.conn.execute(
            "SELECT max(originator_version) FROM csms_events WHERE originator_id = %s",
            (row["originator_id"],),
        ).fetchone()
        assert found is not None
        return int(found[0]) + 1


async def test_verify_names_what_was_changed_removed_or_inserted(history: ServerProcess) -> None:
    await scripted(history)
    code, said = verify(history)
    assert code == 0 and said.startswith("intact: "), said
    checked = int(said.split()[1])
    assert checked > 20

    assert history.database_url
    superuser = Superuser(history.database_url)
    middle = checked // 2
    original = superuser.row(middle)

    superuser.execute(
        "UPDATE csms_events SET state = replace(state::text, 'Accepted', 'Rejected')::bytea "
        "WHERE notification_id = %s",
        middle,
    )
    superuser.execute(  # a change that leaves the bytes alone does not count: make sure
        "UPDATE csms_events SET state = state || ' '::bytea WHERE notification_id = %s", middle
    )
    code, said = verify(history)
    assert code == 1 and f"event {middle} (" in said and "changed after writing" in said, said

    superuser.execute("DELETE FROM csms_events WHERE notification_id = %s", middle)
    superuser.put(original)
    assert verify(history)[0] == 0  # put back exactly as it was: intact again

    superuser.execute("DELETE FROM csms_events WHERE notification_id = %s", middle)
    code, said = verify(history)
    assert code == 1 and "removed" in said, said
    assert f"event {middle + 1} (" in said or f"v{original['originator_version'] + 1}" in said
    superuser.put(original)

    last = superuser.row(checked)
    forged = {**last, "aggregate_hash": None, "chain_hash": None}
    forged["notification_id"] = checked + 1000
    forged["originator_version"] = superuser.next_version(last)
    superuser.put(forged)
    code, said = verify(history)
    assert code == 1 and f"event {checked + 1000} (" in said and "inserted" in said, said
    superuser.execute("DELETE FROM csms_events WHERE notification_id = %s", checked + 1000)

    stolen = {**superuser.row(middle), "notification_id": checked + 2000}
    stolen["originator_version"] = superuser.next_version(stolen)
    superuser.put(stolen)  # a copy with another event's hashes, put at the end
    code, said = verify(history)
    assert code == 1 and f"event {checked + 2000} (" in said, said
    superuser.execute("DELETE FROM csms_events WHERE notification_id = %s", checked + 2000)
    assert verify(history)[0] == 0
