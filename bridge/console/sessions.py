"""Sessions in signed cookies, and the CSRF token every form carries.

The cookie holds a random session id, the signed-in user, the user's password `stamp` and
when the session was last used, signed with HMAC-SHA256 under a key kept 0600 in
`state_dir` (`console-session.key`), so every console process accepts the others'
sessions and no server-side session store is needed. It is sent HttpOnly, SameSite=Strict
(and Secure behind https), re-signed on each request, and refused once idle longer than
`console.session_idle_minutes`. A new id is issued at login and at logout, so an id known
before login is worthless after it. The CSRF token is an HMAC of the id: a page of
another site can neither read nor forge it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from imbridge import statefiles

KEY_FILE = "console-session.key"
COOKIE = "imbridge_console"


@dataclass(frozen=True, slots=True)
class Session:
    sid: str
    user: str | None = None
    stamp: str | None = None
    seen: float = 0.0

    @classmethod
    def fresh(cls, now: float) -> Session:
        return cls(sid=secrets.token_urlsafe(18), seen=now)

    def signed_in(self, user: str, stamp: str, now: float) -> Session:
        return Session(sid=secrets.token_urlsafe(18), user=user, stamp=stamp, seen=now)

    def touched(self, now: float) -> Session:
        return replace(self, seen=now)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_key(state_dir: Path) -> bytes:
    """The signing key, created on first use."""
    path = state_dir / KEY_FILE
    statefiles.create_private(path, _b64(os.urandom(32)).encode() + b"\n")
    key = _unb64(statefiles.read_private(path).decode().strip())
    if len(key) < 32:
        raise ValueError(f"{path}: the session key is too short; delete it to make a new one")
    return key


class SessionCodec:
    def __init__(self, key: bytes, idle_seconds: float) -> None:
        self._key = key
        self.idle = idle_seconds

    def _mac(self, data: bytes) -> bytes:
        return hmac.new(self._key, data, hashlib.sha256).digest()

    def encode(self, session: Session) -> str:
        payload: dict[str, Any] = {"sid": session.sid, "seen": round(session.seen, 3)}
        if session.user is not None:
            payload.update(u=session.user, st=session.stamp)
        data = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        return f"{_b64(data)}.{_b64(self._mac(data))}"

    def decode(self, value: str | None, now: float) -> Session | None:
        """The session in a cookie; None if absent, forged, malformed or idle too long."""
        if not value or value.count(".") != 1:
            return None
        body, mac = value.split(".")
        try:
            data = _unb64(body)
            if not hmac.compare_digest(_unb64(mac), self._mac(data)):
                return None
            payload = json.loads(data)
            session = Session(
                sid=str(payload["sid"]),
                user=payload.get("u"),
                stamp=payload.get("st"),
                seen=float(payload["seen"]),
            )
        except (ValueError, KeyError, TypeError):
            return None
        if now - session.seen > self.idle or session.seen > now + 60:
            return None
        return session

    def csrf(self, session: Session) -> str:
        return _b64(self._mac(b"csrf:" + session.sid.encode()))[:32]

    def csrf_ok(self, session: Session, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token, self.csrf(session))
