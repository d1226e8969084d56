"""The one table of the `imbridge` command's exit codes, for every subcommand.

0 success; 1 a runtime failure or a negative answer (denied, tampered, not ready);
2 bad input (invalid config, bad arguments), so systemd's `RestartPreventExitStatus=2`
stops restart loops on a broken config instead of retrying it forever.
"""

from __future__ import annotations

from typing import Final

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_DENIED: Final = EXIT_FAILURE
"""`policy test`: at least one destination is denied (a negative answer)."""
EXIT_USAGE: Final = 2
