"""Who acted on the archive, as the audit trail names them.

An auditor asks "who searched for this, who lifted that hold": the answer must name the
person, not only the service account. So besides the process's uid and user name, an
`Actor` keeps `SUDO_USER` (the login behind `sudo imbridge archive ...`) and systemd's
`INVOCATION_ID` (which ties a daemon's records to one run in the journal). The coming
review console builds its own `Actor` for the signed-in user, with `via="console"`.
Never a secret here: only names and ids that the journal shows anyway.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True, kw_only=True)
class Actor:
    user: str
    """The account that acted: the process's user name, or the console's signed-in user."""
    uid: int | None = None
    sudo_user: str | None = None
    invocation_id: str | None = None
    via: str = "cli"
    """What acted: `cli`, `daemon`, `console`."""

    @classmethod
    def of_process(cls, via: str = "cli", environ: Mapping[str, str] | None = None) -> Actor:
        """This process's user, with `SUDO_USER` and `INVOCATION_ID` where present."""
        env = os.environ if environ is None else environ
        uid = os.getuid()
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:  # a uid without a passwd entry (containers): the number it is
            name = str(uid)
        return cls(
            user=name,
            uid=uid,
            sudo_user=env.get("SUDO_USER") or None,
            invocation_id=env.get("INVOCATION_ID") or None,
            via=via,
        )

    @property
    def principal(self) -> str:
        """The person to hold responsible: the sudo caller when there is one."""
        return self.sudo_user or self.user

    def label(self) -> str:
        """`alice (sudo as root)`, `imbridge`: how a listing shows it."""
        if self.sudo_user and self.sudo_user != self.user:
            return f"{self.sudo_user} (sudo as {self.user})"
        return self.user

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"user": self.user, "via": self.via}
        if self.uid is not None:
            out["uid"] = self.uid
        if self.sudo_user:
            out["sudo_user"] = self.sudo_user
        if self.invocation_id:
            out["invocation_id"] = self.invocation_id
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Actor:
        uid = data.get("uid")
        return cls(
            user=str(data.get("user", "?")),
            uid=uid if isinstance(uid, int) else None,
            sudo_user=data.get("sudo_user") or None,
            invocation_id=data.get("invocation_id") or None,
            via=str(data.get("via", "?")),
        )
