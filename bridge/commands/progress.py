"""Progress bars for the archive commands that walk many records (verify, export,
purge, search over a large archive).

A bar is drawn with tqdm, on standard error, and only when standard error is a
terminal: piped or redirected output (cron, log shipping, `| jq`) stays free of control
characters. Callers get an `advance(n)` function, so the code that walks records never
knows whether anyone is watching.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

Advance = Callable[[int], None]


def _noop(_: int) -> None:
    return None


def on_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


@contextmanager
def progress(
    desc: str, total: int | None, *, stream: TextIO | None = None, unit: str = "records"
) -> Iterator[Advance]:
    """Yields `advance(n)`: a bar on `stream` (default stderr) when it is a terminal,
    a no-op otherwise."""
    stream = stream if stream is not None else sys.stderr
    if not on_terminal(stream):
        yield _noop
        return
    from tqdm import tqdm  # noqa: PLC0415 - only a terminal session pays for it

    with tqdm(total=total, desc=desc, unit=unit, unit_scale=True, file=stream, leave=False) as bar:
        yield bar.update
