"""The WebSocket layer's benchmark: both servers echo every message and are measured."""

from __future__ import annotations

import re

import pytest

from bench import transport


def test_each_server_echoes_the_load_and_is_measured_by_its_cpu(
    capsys: pytest.CaptureFixture[str],
) -> None:
    transport.main(["--stations", "3", "--rate", "30", "--duration", "1", "--rounds", "1"])
    printed = capsys.readouterr().out
    for kind in transport.KINDS:
        measured = re.search(
            rf"{re.escape(kind)}: ([\d,]+) msg/s, server ([\d.]+) cores, ([\d.]+) us a message",
            printed,
        )
        assert measured is not None, printed
        assert 20 <= int(measured[1].replace(",", "")) <= 40  # 30 offered, all echoed
    assert re.search(r"websockets' connection adds -?[\d.]+ us", printed), printed


def test_a_measurement_counts_only_the_messages_echoed_within_its_time() -> None:
    measured = transport.measure("sans-I/O", stations=2, rate=20, seconds=1)
    assert measured.kind == "sans-I/O"
    assert 15 <= measured.messages <= 25
    assert measured.seconds >= 1
    assert measured.us_a_message == measured.server_cpu / measured.messages * 1e6
