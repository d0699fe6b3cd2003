"""The batching projection runner: a batch that fails leaves neither rows nor memory behind."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import Tracking

from adapters.postgres import eventsourcing_env, open_store
from adapters.projection_runner import BatchRunner
from adapters.server import ensure_views
from domain.commands import StartTransaction, StopTransaction
from domain.transaction import Transaction
from projections.billing import BillingProjection, BillingView
from projections.transactions import TransactionsProjection, TransactionsView

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


class Interrupted(Exception):
    pass


def _store_a_finished_session(database_url: str) -> list[tuple[int, Any]]:
    """Its events with their positions."""
    app = open_store(database_url)
    try:
        started = app.execute(
            StartTransaction(
                station_id="CS-1",
                fingerprint="fp-1",
                evse_id=1,
                connector_id=1,
                id_token="TAG",
                meter_start_wh=1_000,
                started_at=T0,
                reservation_id=None,
                readings=[],
                received_at=T0,
            )
        )
        app.execute(
            StopTransaction(
                station_id="CS-1",
                transaction_key=started.transaction_key,
                stopped_at=T0 + timedelta(hours=1),
                meter_stop_wh=5_500,
                reason=None,
                id_token=None,
                readings=[],
                received_at=T0 + timedelta(hours=1),
            )
        )
        stored = app.recorder.select_notifications(start=1, limit=100)
        return [(n.id, app.mapper.to_domain_event(n)) for n in stored]
    finally:
        app.close()


def _start_then_fail(runner: BatchRunner, stored: list[tuple[int, Any]]) -> None:
    """Applies the events up to the start, then the rest in a batch that fails to commit."""
    start = next(position for position, event in stored if isinstance(event, Transaction.Started))
    runner.step(until=start)
    rest = [(position, event) for position, event in stored if position > start]
    assert rest, "the stop comes after the start"
    with pytest.raises(Interrupted), runner.view.batch():
        for position, event in rest:
            runner.projection.process_event(event, Tracking("CSMS", position))
        raise Interrupted


def test_a_failed_batch_is_applied_again_in_full(database_url: str) -> None:
    stored = _store_a_finished_session(database_url)
    env = eventsourcing_env(database_url)
    ensure_views(database_url, env)
    with BatchRunner(env, BillingProjection, BillingView) as billing:
        _start_then_fail(billing, stored)
        while billing.step():
            pass
    with BatchRunner(env, TransactionsProjection, TransactionsView) as transactions:
        _start_then_fail(transactions, stored)
        while transactions.step():
            pass
    with psycopg.connect(database_url) as conn:
        priced = conn.execute("SELECT version, energy_wh FROM charging_sessions").fetchall()
        shown = conn.execute("SELECT energy_wh, stopped_at FROM transactions").fetchall()
    assert priced == [(1, 4_500)]
    assert shown == [(4_500, T0 + timedelta(hours=1))]
