"""Tamper evidence: checking the hash chains the store writes with every event.

The database computes them (`adapters.postgres.CHAIN_SQL`) in the transaction that writes the
event; the store refuses UPDATE and DELETE. Someone who bypasses that (a superuser) breaks a
chain, and `verify` names the first event where it breaks.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg

from adapters.postgres import EVENTS_TABLE


def _sha(*parts: bytes) -> bytes:
    return hashlib.sha256(b"".join(parts)).digest()


def content_hash(originator_id: UUID, version: int, topic: str | None, state: bytes) -> bytes:
    return _sha(
        str(originator_id).encode(),
        version.to_bytes(8, "big", signed=True),
        (topic or "").encode(),
        state,
    )


@dataclass(frozen=True)
class Verdict:
    checked: int  # events whose hashes were checked
    unchained: int  # events stored before the chain was installed
    seconds: float
    head: bytes | None  # the last chain hash: keep it elsewhere to anchor the next check
    problem: str | None  # the first break, naming the event

    @property
    def intact(self) -> bool:
        return self.problem is None


Progress = Callable[[int, float], None]


def verify(database_url: str, progress: Progress | None = None) -> Verdict:
    """Walks every event in order, recomputing both chains; stops at the first break."""
    started = time.monotonic()
    checker = _Checker()
    with psycopg.connect(database_url) as conn, conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        with conn.cursor(name="csms_audit_verify") as cursor:
            cursor.itersize = 2000
            cursor.execute(
                "SELECT notification_id, originator_id, originator_version, topic, state, "
                f"aggregate_hash, chain_hash FROM {EVENTS_TABLE} ORDER BY notification_id"
            )
            for row in cursor:
                checker.check(*row)
                if checker.problem:
                    break
                if progress and checker.seen % 10000 == 0:
                    progress(checker.seen, time.monotonic() - started)
    seconds = time.monotonic() - started
    return Verdict(checker.checked, checker.unchained, seconds, checker.head, checker.problem)


class _Checker:
    def __init__(self) -> None:
        self.seen = 0
        self.checked = 0
        self.unchained = 0
        self.head: bytes | None = None
        self.problem: str | None = None
        self._last: dict[UUID, tuple[int, bytes | None]] = {}

    def check(
        self,
        notification_id: int,
        originator_id: UUID,
        version: int,
        topic: str | None,
        state: Any,
        aggregate_hash: Any,
        chain_hash: Any,
    ) -> None:
        self.seen += 1
        name = f"event {notification_id} ({topic}, aggregate {originator_id} v{version})"
        previous = self._last.get(originator_id)
        if previous is not None and version != previous[0] + 1:
            self.problem = (
                f"{name}: the aggregate jumps from v{previous[0]} to v{version}: "
                "an event of it was removed"
            )
            return
        if chain_hash is None:
            if self.checked:
                self.problem = (
                    f"{name} carries no hash but follows chained events: it was inserted "
                    "bypassing the store's triggers"
                )
                return
            self.unchained += 1
            self._last[originator_id] = (version, None)
            return
        content = content_hash(originator_id, version, topic, bytes(state or b""))
        expected = _sha((previous[1] if previous else None) or b"", content)
        if bytes(aggregate_hash or b"") != expected:
            self.problem = f"{name}: its content no longer matches its hash: changed after writing"
            return
        link = _sha(self.head or b"", notification_id.to_bytes(8, "big", signed=True), content)
        if bytes(chain_hash) != link:
            self.problem = (
                f"{name}: the chain breaks just before it: an event was removed before it, "
                "or it was inserted out of place"
            )
            return
        self.checked += 1
        self.head = bytes(chain_hash)
        self._last[originator_id] = (version, expected)
