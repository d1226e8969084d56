"""The relay account on its homeserver: the client every part talks through, login, and
whether the account is reachable.

Login keeps the device: with a password, the token of an earlier login is reused, so
the device (and its transaction-id scope, which deduplicates retried sends) stays the
same across restarts. `connected` is what `send` checks: the sync loop (`receive`)
says when the homeserver answers or stops answering.
"""

from __future__ import annotations

import asyncio
from typing import Any

from nio import AsyncClient, AsyncClientConfig, LoginResponse, WhoamiResponse

from imbridge.adapter import Cursors
from imbridge.errors import AdapterError

from .config import MatrixConfig


class Session:
    """The `AsyncClient` and the account's state; the only writer of both."""

    def __init__(
        self,
        name: str,
        config: MatrixConfig,
        cursors: Cursors,
        log: Any,
        *,
        as_token: str | None = None,
    ) -> None:
        """`as_token`: appservice mode, where the bot is the appservice's sender and
        its token is the one the registration holds."""
        self.name = name
        self._as_token = as_token
        self.config = config
        self._cursors = cursors
        self._log = log
        self.client = AsyncClient(
            config.homeserver,
            config.user_id,
            store_path=None,
            config=AsyncClientConfig(
                max_limit_exceeded=0,  # 429s go back to the outbox, which keeps order
                max_timeouts=0,
                request_timeout=config.request_timeout,
                store_sync_tokens=False,
                encryption_enabled=False,
            ),
        )
        self._connected = False
        self._closed = False

    @property
    def identity(self) -> str:
        return self.config.user_id

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def closed(self) -> bool:
        return self._closed

    def reopen(self) -> None:
        """A new run: the daemon may retry start() after a failed one and aclose()."""
        self._closed = False

    def online(self) -> None:
        self._connected = True

    def offline(self) -> None:
        self._connected = False

    def closing(self) -> None:
        """No send and no sync from now on."""
        self._closed = True
        self._connected = False

    async def login(self) -> None:
        """Token login; with a password, reuse the token stored by an earlier login so
        the device (and its transaction-id scope) stays the same across restarts."""
        cfg = self.config
        token = cfg.access_token.get_secret_value() if cfg.access_token else self._as_token
        if token is None:
            token = await self._cursors.get("access_token")
        if token is not None:
            self.client.access_token = token
            async with asyncio.timeout(cfg.request_timeout):
                who = await self.client.whoami()
            if isinstance(who, WhoamiResponse):
                self.client.user_id = who.user_id
                self.client.device_id = who.device_id or ""
                return
            if cfg.password is None:
                what = "as_token" if self._as_token else "access token"
                raise AdapterError(f"matrix: {what} rejected: {who}")
        assert cfg.password is not None  # noqa: S101 - the config requires one of the two
        async with asyncio.timeout(cfg.request_timeout):
            resp = await self.client.login(
                cfg.password.get_secret_value(), device_name=cfg.device_name
            )
        if not isinstance(resp, LoginResponse):
            raise AdapterError(f"matrix: login failed: {resp}")
        await self._cursors.set("access_token", resp.access_token)
        self._log.info("logged_in", device_id=resp.device_id)

    async def relogin(self) -> None:
        """After the homeserver forgot the token: a fresh password login, if there is one."""
        if self.config.password is not None:
            await self._cursors.set("access_token", "")
            self.client.access_token = ""
            await self.login()

    async def aclose(self) -> None:
        await self.client.close()
