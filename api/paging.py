"""What every paged or timed query shares: page sizes, cursors, times without an offset."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TypeVar

MAX_PAGE = 1000
T = TypeVar("T")


def page_size(first: int) -> int:
    return max(1, min(first, MAX_PAGE))


def position_after(after: str | None) -> int:
    """The position a cursor stands for (0: from the beginning)."""
    try:
        return int(after) if after else 0
    except ValueError:
        raise ValueError(f"{after!r} is not a cursor this query gave") from None


def split_page(rows: Sequence[T], size: int) -> tuple[Sequence[T], bool]:
    """A page of rows fetched as size + 1, and whether there are more after it."""
    return rows[:size], len(rows) > size


def aware(moment: datetime | None) -> datetime | None:
    """A time without an offset is taken as UTC, as stations and operators mean it."""
    if moment is None or moment.tzinfo:
        return moment
    return moment.replace(tzinfo=UTC)
