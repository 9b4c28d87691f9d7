"""`SegmentIndex`: which segment and line holds each leaf, and the bounded line cache."""

from __future__ import annotations

from signet.storage.ledger_segments import CACHED_SEGMENTS, SegmentIndex


def test_leaves_are_found_in_their_runs_also_when_a_gap_splits_a_segment() -> None:
    index = SegmentIndex()
    index.add_run(0, "s0", 0)  # leaves 0..9, lines 0..9 of s0
    index.add_run(10, "s10", 0)  # leaves 10..14 in s10 ...
    index.add_run(18, "s10", 5)  # ... a marked gap of 3 (15..17), then 18.. from line 5
    assert index.locate(0) == ("s0", 0)
    assert index.locate(9) == ("s0", 9)
    assert index.locate(10) == ("s10", 0)
    assert index.locate(14) == ("s10", 4)
    assert index.locate(18) == ("s10", 5)
    assert index.locate(20) == ("s10", 7)


def test_only_the_most_recently_kept_segments_stay_cached() -> None:
    index = SegmentIndex()
    for n in range(CACHED_SEGMENTS + 2):
        index.keep(f"s{n}", [b"leaf"])
    assert index.cached("s0") is None and index.cached("s1") is None
    assert index.cached(f"s{CACHED_SEGMENTS + 1}") == [b"leaf"]
    assert index.cached("s2") == [b"leaf"]
