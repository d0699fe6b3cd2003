"""Admission of booting stations: in a boot storm, take what the server can answer in time and
tell the rest to come back, as OCPP provides (BootNotification answered Pending, with an
interval), rather than letting them queue until they time out and retry all at once.
"""

from __future__ import annotations

import random
from collections.abc import Callable

# Seconds a station is told to wait before booting again, or None to accept it now.
Admission = Callable[[], int | None]

RETRY_SECONDS = (20, 60)  # spread over a range, so the stations do not come back together


def admit_all() -> int | None:
    return None


def by_backlog(backlog: Callable[[], int], limit: int) -> Admission:
    """Accepts while fewer than `limit` commands wait to be committed; 0 accepts always."""

    def retry_after() -> int | None:
        if limit and backlog() >= limit:
            return random.randint(*RETRY_SECONDS)
        return None

    return retry_after
