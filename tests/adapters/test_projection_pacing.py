"""A projection that keeps up lets events gather between steps; one that is behind does not."""

from __future__ import annotations

import time

import pytest

from adapters.projection_host import GATHER_SECONDS, pause_after_step


def test_a_projection_behind_steps_again_at_once() -> None:
    assert pause_after_step(time.monotonic(), applied=5000, batch=5000) == 0.0


@pytest.mark.parametrize("applied", [0, 1, 4999])
def test_a_projection_keeping_up_steps_at_most_once_a_gathering_time(applied: int) -> None:
    began = time.monotonic()
    pause = pause_after_step(began, applied=applied, batch=5000)
    assert GATHER_SECONDS - 0.05 < pause <= GATHER_SECONDS


def test_a_long_step_is_followed_by_no_pause() -> None:
    began = time.monotonic() - 2 * GATHER_SECONDS
    assert pause_after_step(began, applied=10, batch=5000) == 0.0
