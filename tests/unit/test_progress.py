"""Long archive commands draw a bar on a terminal and nothing when piped."""

from __future__ import annotations

import io

from imbridge.commands.progress import progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_a_bar_on_a_terminal() -> None:
    term = Terminal()
    with progress("verifying", 1000, stream=term) as advance:
        for _ in range(10):
            advance(100)
    assert "verifying" in term.getvalue()
    assert "/1.00k" in term.getvalue()  # the total, as a person sees it


def test_progress_stays_quiet_when_piped() -> None:
    piped = io.StringIO()
    with progress("verifying", 1000, stream=piped) as advance:
        advance(1000)
    assert piped.getvalue() == ""
