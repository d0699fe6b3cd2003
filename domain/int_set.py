"""A set of integers in eight bytes each.

A Python set of ints costs about 70 bytes an entry. A transaction remembers a number or a digest
for every message of its session; at 20,000 sessions of thousands of messages each, that
difference is gigabytes.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left

_INT64 = range(-(2**63), 2**63)


class IntSet:
    """Kept sorted: adding in increasing order (sequence numbers, as a rule) only appends.

    An integer beyond 64 bits (no station sends one, but one may) is kept in a plain set.
    """

    __slots__ = ("_beyond", "_items")

    def __init__(self) -> None:
        self._items = array("q")
        self._beyond: set[int] = set()

    def add(self, item: int) -> None:
        items = self._items
        if item not in _INT64:
            self._beyond.add(item)
        elif not items or item > items[-1]:
            items.append(item)
        else:
            at = bisect_left(items, item)
            if items[at] != item:
                items.insert(at, item)

    def __contains__(self, item: int) -> bool:
        if item not in _INT64:
            return item in self._beyond
        items = self._items
        at = bisect_left(items, item)
        return at < len(items) and items[at] == item

    def __len__(self) -> int:
        return len(self._items) + len(self._beyond)
