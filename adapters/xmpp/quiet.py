"""Keeps slixmpp's import-time advice out of imbridge's output.

slixmpp logs "Using slower stringprep, consider using cargo to build the faster version
in rust." at WARNING through stdlib logging (logger `slixmpp.stringprep`) the first time
it is imported without its optional Rust extension. That is advice to slixmpp's
developers, not news for an operator: it showed on standard error before every command's
own output. The filter drops that one record and nothing else from slixmpp, so its real
warnings still reach the log. Installed when this package is imported, which is before
any of its modules imports slixmpp.
"""

from __future__ import annotations

import logging
from typing import Final

STRINGPREP_LOGGER: Final = "slixmpp.stringprep"
ADVICE: Final = "Using slower stringprep"


class _DropStringprepAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(ADVICE)


def silence_import_advice() -> None:
    """Adds the filter once (importing this package twice must not stack filters)."""
    logger = logging.getLogger(STRINGPREP_LOGGER)
    if not any(isinstance(f, _DropStringprepAdvice) for f in logger.filters):
        logger.addFilter(_DropStringprepAdvice())


__all__ = ["silence_import_advice"]
