"""
Tests of L{ReadBatcher}, which joins the records TLS hands over one by one.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from twisted.internet.task import Clock

from clusternet.tunnel._batching import RECORD, ReadBatcher


def _batcher() -> tuple[Clock, list[bytes], ReadBatcher]:
    clock = Clock()
    delivered: list[bytes] = []
    return clock, delivered, ReadBatcher(clock, delivered.append)


def test_a_lone_short_record_goes_on_at_once() -> None:
    clock, delivered, batcher = _batcher()
    batcher.add(b"ping")
    assert delivered == [b"ping"]
    assert clock.getDelayedCalls() == []


def test_full_records_are_joined_until_a_short_one_ends_the_run() -> None:
    clock, delivered, batcher = _batcher()
    full = b"f" * RECORD
    batcher.add(full)
    batcher.add(full)
    assert delivered == []
    batcher.add(b"end")
    assert delivered == [full + full + b"end"]
    assert clock.getDelayedCalls() == []


def test_full_records_go_on_at_the_next_turn() -> None:
    clock, delivered, batcher = _batcher()
    full = b"f" * RECORD
    batcher.add(full)
    batcher.add(full)
    assert delivered == []
    clock.advance(0)
    assert delivered == [full + full]


def test_flush_delivers_what_is_held_and_cancels_the_turn() -> None:
    clock, delivered, batcher = _batcher()
    batcher.add(b"f" * RECORD)
    batcher.flush()
    assert delivered == [b"f" * RECORD]
    assert clock.getDelayedCalls() == []
    batcher.flush()
    assert len(delivered) == 1


@given(st.lists(st.integers(1, 2 * RECORD), max_size=20), st.data())
def test_bytes_arrive_in_order_and_whole(sizes: list[int], data: st.DataObject) -> None:
    clock, delivered, batcher = _batcher()
    sent = b""
    for i, size in enumerate(sizes):
        piece = bytes([i % 251]) * min(size, RECORD)
        sent += piece
        batcher.add(piece)
        if data.draw(st.booleans()):
            clock.advance(0)
    clock.advance(0)
    assert b"".join(delivered) == sent
    assert clock.getDelayedCalls() == []
