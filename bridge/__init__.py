"""imbridge: relays rooms between IRC, XMPP and Matrix under policy, and archives what crossed.

The core (this package) never imports a protocol library or an adapter: it learns what a
destination can do from the adapter's declared capabilities.
"""

from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "imbridge-gateway"
"""The name on PyPI (`imbridge` there is an unrelated project); the command and the
import name stay `imbridge`."""

try:
    __version__ = version(DISTRIBUTION)
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
