"""The acknowledgement window: what the server has not confirmed never exceeds its
bounds, marks go out early enough that the stream never stalls, and a PONG frees exactly
what its mark (and every earlier one) covered."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from imbridge.adapters.irc.proto.floodcontrol import AckWindow


def test_window_fills_marks_at_half_and_a_pong_frees_what_it_covers() -> None:
    w = AckWindow(max_lines=4, max_bytes=10_000)
    w.sent(100)
    assert not w.wants_mark()
    w.sent(100)
    assert w.wants_mark()
    first = w.mark()
    w.sent(100)
    w.sent(100)
    assert not w.has_room(100)
    second = w.mark()
    assert w.acked(first)
    assert w.lines == 2
    assert w.bytes == 200
    assert not w.acked("foreign")
    assert w.acked(second)
    assert w.lines == 0


def test_bytes_bound_the_window_too_but_an_empty_window_takes_any_line() -> None:
    w = AckWindow(max_lines=100, max_bytes=1024)
    assert w.has_room(5000)
    w.sent(600)
    assert not w.has_room(600)


def test_a_later_pong_also_frees_earlier_marks() -> None:
    w = AckWindow(max_lines=10, max_bytes=10_000)
    tokens = []
    for _ in range(3):
        w.sent(10)
        tokens.append(w.mark())
    assert w.acked(tokens[-1])
    assert w.lines == 0
    assert not w.marks


@settings(max_examples=2_000, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 512), st.booleans()), max_size=200))
def test_outstanding_never_exceeds_the_window_when_the_writer_obeys_it(
    steps: list[tuple[int, bool]],
) -> None:
    w = AckWindow(max_lines=10, max_bytes=4096)
    for size, pong in steps:
        if pong and w.marks:
            w.acked(w.marks[0][0])
        if w.has_room(size):
            w.sent(size)
            if w.wants_mark():
                w.mark()
        else:
            assert w.marks  # something is on its way back: the writer cannot deadlock
        assert w.lines <= 10
        assert w.bytes <= 4096 or w.lines == 1
