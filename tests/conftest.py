"""Logging for the whole suite: structlog to stderr (pytest shows it for failures)."""

from __future__ import annotations

from imbridge import logs

logs.setup("debug", "console")
