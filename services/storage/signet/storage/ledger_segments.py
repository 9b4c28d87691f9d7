"""Where each ledger leaf is stored: runs of consecutive leaves in the vault's segments.

A segment (one vault record, one JSON line per leaf) normally holds one run; a segment
split by a marked gap holds two.  `SegmentIndex` maps a leaf index to its segment and
line, and keeps the lines of the most recently read segments (not thread-safe: the
ledger calls it under its lock).
"""

from __future__ import annotations

import bisect
from collections import OrderedDict

#: Segments whose lines are kept in memory (each up to 4,096 leaves).
CACHED_SEGMENTS = 64


class SegmentIndex:
    def __init__(self) -> None:
        # per run: the tree position it starts at, its segment's name, the line it starts at
        self._starts: list[int] = []
        self._names: list[str] = []
        self._lines: list[int] = []
        self._cache: OrderedDict[str, list[bytes]] = OrderedDict()

    def add_run(self, start: int, name: str, line: int) -> None:
        """Leaves from `start` on are in segment `name` from `line` on (runs in order)."""
        self._starts.append(start)
        self._names.append(name)
        self._lines.append(line)

    def locate(self, index: int) -> tuple[str, int]:
        """(segment name, line) of leaf `index`, which must be in a run."""
        position = bisect.bisect_right(self._starts, index) - 1
        return self._names[position], self._lines[position] + index - self._starts[position]

    def cached(self, name: str) -> list[bytes] | None:
        return self._cache.get(name)

    def keep(self, name: str, lines: list[bytes]) -> None:
        self._cache[name] = lines
        while len(self._cache) > CACHED_SEGMENTS:
            self._cache.popitem(last=False)
