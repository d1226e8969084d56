"""Keeps optional pretty-printers out of the daemon.

structlog imports rich, and slixmpp imports pygments, whenever they are installed (they
come in through irc's jaraco dependencies), for coloured tracebacks and XML that a service
never shows. Importing them costs about 5 MiB of resident memory in every daemon
(measured in bench/e2e.py). Marking them absent before anything imports structlog makes
both libraries take their plain-output paths. The `imbridge` command imports this module
first; tests and library users are unaffected.
"""

from __future__ import annotations

import sys

REFUSED = ("rich", "pygments")

for _name in REFUSED:
    sys.modules.setdefault(_name, None)  # type: ignore[arg-type]
