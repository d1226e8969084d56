"""Matrix adapter on matrix-nio: rooms, edits, redactions, replies, media, safe HTML."""

from __future__ import annotations

from typing import TYPE_CHECKING

from imbridge.adapters.matrix.config import MatrixConfig

if TYPE_CHECKING:
    from imbridge.adapters.matrix.adapter import MatrixAdapter

__all__ = ["MatrixAdapter", "MatrixConfig"]


def __getattr__(name: str) -> object:
    """`MatrixAdapter` is imported on first use, with matrix-nio: loading the config model alone
    (`imbridge check`, through the `imbridge.adapter_configs` entry point) stays light."""
    if name == "MatrixAdapter":
        from imbridge.adapters.matrix.adapter import MatrixAdapter  # noqa: PLC0415 - lazy

        return MatrixAdapter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
