"""The command writer's benchmark: every command it sends is answered, and stored."""

from __future__ import annotations

import re

import psycopg
import pytest

from bench import writer


def test_every_command_sent_is_answered_stored_and_counted(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    options = ["--submitters", "5", "--rate", "50", "--duration", "1", "--warmup", "0.5"]
    writer.main([*options, "--database-url", database_url])
    printed = capsys.readouterr().out
    measured = re.search(r"([\d,]+) commands/s from 5 submitters over ([\d.]+) s", printed)
    assert measured is not None, printed
    assert 30 <= int(measured[1].replace(",", "")) <= 70  # 50 offered
    assert re.search(r"answered at p50 [\d.]+ ms, p95 [\d.]+, p99 [\d.]+, max [\d.]+", printed)
    answered = int(measured[1].replace(",", "")) * float(measured[2])
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM csms_events WHERE topic LIKE '%ConnectorStatusChanged'"
        ).fetchone()
    assert row is not None
    assert row[0] >= answered - 1  # each answered change is stored (rounding of the rate)
