"""Matrix adapter on matrix-nio: rooms, edits, redactions, replies, media, safe HTML."""

from .adapter import MatrixAdapter
from .config import MatrixConfig

__all__ = ["MatrixAdapter", "MatrixConfig"]
