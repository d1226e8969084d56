"""Keeps optional pretty-printers out of the daemon.

structlog imports rich, and slixmpp imports pygments, whenever they are installed (they
come in through irc's jaraco dependencies), for coloured tracebacks and XML that a service
never shows. Importing them costs about 5 MiB of resident memory in every daemon
(measured in bench/e2e.py). Marking them absent before anything imports structlog makes
both libraries take their plain-output paths.

The same holds for cffi's Python half: pycryptodome (a matrix-nio dependency, used for
encrypted attachments) loads it, and pycparser with it, when it is installed, and falls
back to ctypes, which the process has loaded anyway, when it is not. That is another
1.5 MiB. Compiled cffi modules (pycares) need only `_cffi_backend`, which stays.

The `imbridge` command imports this module first; tests and library users are
unaffected.
"""

from __future__ import annotations

import sys

REFUSED = ("rich", "pygments", "cffi")

for _name in REFUSED:
    sys.modules.setdefault(_name, None)  # type: ignore[arg-type]
