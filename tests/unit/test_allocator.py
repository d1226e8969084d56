"""The daemon fixes glibc's malloc thresholds (see `imbridge.allocator`)."""

from __future__ import annotations

import platform

from imbridge import allocator


def test_glibc_takes_the_fixed_thresholds() -> None:
    libc, _ = platform.libc_ver()
    assert allocator.hold_thresholds() is (libc == "glibc")
