"""Which configured hosts are this machine's own loopback, decided from the text alone.

Config is validated before anything resolves a name, so only `localhost` and loopback
literals count: a name that happens to resolve to 127.0.0.1 is treated as remote, which
errs towards refusing cleartext and warning about a public listener.
"""

from __future__ import annotations

import ipaddress


def is_loopback_host(host: str) -> bool:
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):  # RFC 6761 §6.3
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
