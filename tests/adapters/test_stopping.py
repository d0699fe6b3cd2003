"""A server process stopped by a signal while its start blocks."""

from __future__ import annotations

import os
import signal
import time

import pytest

from adapters.server import _stopped_at_once_by_signals


class _SignalledWhileFinalised:
    """Its finaliser takes a SIGTERM, and Python ignores what a finaliser raises."""

    def __del__(self) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)  # the handler runs here


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the lost exit
def test_a_stop_lost_in_a_finaliser_still_ends_the_start() -> None:
    before = signal.getsignal(signal.SIGTERM)
    reached = False
    with pytest.raises(SystemExit) as stopped, _stopped_at_once_by_signals():
        _SignalledWhileFinalised()  # dropped at once: its finaliser runs now
        reached = True  # the exit raised in the finaliser was lost
    assert reached and stopped.value.code == 0
    assert signal.getsignal(signal.SIGTERM) is before  # the handlers from before are back
