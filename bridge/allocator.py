"""Keeps the C heap of a daemon that runs for months from creeping up.

glibc's malloc starts out handing blocks of 128 KiB or more to their own memory maps, and
giving the top of its heap back to the system once 128 KiB of it is free. But each time a
large block is freed it raises that threshold (up to 32 MiB) and the trim threshold with
it: from then on, large blocks come from the heap too, and what they leave behind when
freed stays with the process. Under a steady stream that is a slow climb nobody asked
for: in `bench/e2e.py`'s soak (340 messages/s over IRC and XMPP) the process grew about
0.5 MiB a minute while Python's own objects and SQLite's memory stayed flat. Fixing both
thresholds at their starting values (which also turns the adjustment off, see
mallopt(3)) cut that growth to about a fifth in the same run. Large blocks are rare on
the relay path, so the extra memory maps cost nothing measurable.

Only glibc has `mallopt`; elsewhere (musl) there is nothing to tune and nothing is done.
"""

from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
THRESHOLD = 128 * 1024
"""glibc's own starting value for both."""


def hold_thresholds(threshold: int = THRESHOLD) -> bool:
    """Fixes glibc's mmap and trim thresholds at `threshold` bytes for the rest of the
    process; False where the C library has no `mallopt`."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, threshold)) and bool(mallopt(M_TRIM_THRESHOLD, threshold))
