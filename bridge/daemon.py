"""Assembles the parts and owns their tasks: database, adapters, relay, outbox.

Lifecycle: `start` opens the state, resumes the outbox, and connects every network in
the background (a network that is down at start is retried with backoff while the others
relay); `ready` tells when every network has connected and joined its rooms; `stop`
drains in-flight sends for up to `bridge.drain_seconds` and closes everything, leaving
what was not delivered in the database for the next start. `reload` applies a new config
without touching networks whose section did not change.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import signal
import sqlite3
from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import web

from imbridge import logs, registry
from imbridge.adapter import Adapter, Cursors, NetworkConfig, RateLimit
from imbridge.archive import NullRecorder, Recorder
from imbridge.archive.capture import AttachmentCapture
from imbridge.archive.files import FileStore
from imbridge.archive.sealing import Sealer
from imbridge.archive.service import ArchiveService
from imbridge.archive.store import ARCHIVE_MIGRATIONS, ArchiveStore
from imbridge.config.load import load_config
from imbridge.config.schema import Config
from imbridge.cursors import NetworkCursors
from imbridge.db import Database
from imbridge.endpoints import make_app, serve_http
from imbridge.errors import ConfigError
from imbridge.events import EventId, Message, MessageKind, Origin, RemoteId, new_event_id
from imbridge.hooks import engine as hook_engine
from imbridge.medialinks import MediaLinks
from imbridge.metrics import Metrics
from imbridge.outbox import Item, Outbox, enqueue_sync, txn_id_for
from imbridge.policy import compile_policy
from imbridge.relay import NOTICE_SENDER, Relay, Setup
from imbridge.router import Router
from imbridge.sdnotify import Notifier
from imbridge.sinks.feed import SINK_MIGRATIONS
from imbridge.sinks.runner import Sinks

log = structlog.get_logger("imbridge.daemon")

AdapterBuilder = Callable[[str, NetworkConfig, Cursors], Adapter]
START_BACKOFF_CAP = 60.0
DB_NAME = "imbridge.db"
BUSY_RATE = 400.0
"""Events/s past which the relay counts as busy, and record sinks yield to it."""


def setup_for(config: Config, hooks: hook_engine.Hooks | None = None) -> Setup:
    return Setup(
        router=Router(config.gateways),
        policy=compile_policy(config.policy),
        networks=config.networks,
        log_text=config.bridge.log.message_text,
        hooks=hooks if hooks else None,
    )


def hooks_for(config: Config, previous: hook_engine.Hooks | None = None) -> hook_engine.Hooks:
    """The policy hooks of `config`, their counters carried over from `previous`."""
    base = config.source.parent if config.source is not None else None
    hooks = hook_engine.Hooks(hook_engine.build(config.policy.hooks, base))
    if previous is not None:
        hooks.stats.update({k: v for k, v in previous.stats.items() if k in hooks.stats})
    return hooks


class Daemon:
    def __init__(
        self,
        config: Config,
        *,
        factory: AdapterBuilder | None = None,
        recorder: Recorder | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        """`factory` replaces the registry (tests build memory adapters sharing a hub)."""
        self.config = config
        self._factory = factory
        self.notifier = notifier or Notifier({})
        self.metrics = Metrics(self)
        self.reconnects: dict[str, int] = {}
        self.seen_connected: dict[str, bool] = {}
        """What the supervisor last saw of each network (from its first connection on)."""
        self._http: web.AppRunner | None = None
        self.media_links: MediaLinks | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self.adapters: dict[str, Adapter] = {}
        self.db = Database(
            config.bridge.state_dir / DB_NAME,
            {"archive": ARCHIVE_MIGRATIONS, "sinks": SINK_MIGRATIONS},
        )
        self.archive: ArchiveService | None = None
        if recorder is None and config.archive.enabled:
            store = ArchiveStore(config.archive, state_dir=config.bridge.state_dir)
            self.archive = ArchiveService(self.db, store)
            recorder = store
        self.recorder: Recorder = recorder or NullRecorder()
        self.outbox: Outbox | None = None
        self.relay: Relay | None = None
        self.capture: AttachmentCapture | None = None
        self.hooks: hook_engine.Hooks | None = None
        self._retired_hooks: list[hook_engine.Hooks] = []
        self.sinks: Sinks | None = None
        self._busy_sample = (0.0, 0)
        self._busy = False
        self._started: dict[str, asyncio.Event] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    # -- assembly -----------------------------------------------------------------------

    def _build_adapter(self, name: str) -> Adapter:
        net = self.config.networks[name]
        cursors = NetworkCursors(self.db, name, waiting=self._waiting_event)
        if self._factory is not None:
            return self._factory(name, net, cursors)
        cls = registry.adapter_class(net.type)
        return registry.build(cls, name, net, cursors, media_links=self.media_links)

    def _waiting_event(self, network: str, remote_id: RemoteId) -> EventId | None:
        return self.relay.waiting_event(network, remote_id) if self.relay is not None else None

    def _relay(self) -> Relay:
        if self.relay is None:
            raise RuntimeError("daemon not started")
        return self.relay

    def _outbox(self) -> Outbox:
        if self.outbox is None:
            raise RuntimeError("daemon not started")
        return self.outbox

    def _rate_limits(self) -> dict[str, RateLimit]:
        out = {}
        for name, adapter in self.adapters.items():
            net = self.config.networks.get(name)
            out[name] = (net.rate_limit if net and net.rate_limit else None) or type(
                adapter
            ).default_rate_limit
        return out

    async def start(self) -> None:
        await self.db.open()
        if self.archive is not None:
            await self.archive.record_start(self.config)
            await self.archive.__aenter__()
        public_url = self.config.bridge.http.public_url
        if public_url is not None:
            self.media_links = MediaLinks.from_state(self.config.bridge.state_dir, public_url)
        for name in self.config.networks:
            self.adapters[name] = self._build_adapter(name)
        key = self.config.archive.encryption_key
        self.outbox = Outbox(
            self.db,
            self.adapters,
            self._rate_limits(),
            self.recorder,
            sealer=Sealer(key.get_secret_value() if key is not None else None),
        )
        self.hooks = hooks_for(self.config)
        self.relay = Relay(
            self.db, setup_for(self.config, self.hooks), self.adapters, self.outbox, self.recorder
        )
        self.outbox.observe_send = self.metrics.observe_send
        if self.archive is not None and self.config.archive.attachments.enabled:
            files = FileStore.for_archive(self.config.archive, self.config.bridge.state_dir)
            self.capture = AttachmentCapture(self.db, self.archive.store, files, self.adapters)
            await self.capture.__aenter__()
        await self._start_sinks()
        pending = await self.outbox.load()
        log.info(
            "started",
            networks=len(self.adapters),
            gateways=len(self.config.gateways),
            pending=pending,
        )
        for name in self.adapters:
            self._launch(name)
        listen = self.config.bridge.http.listen
        if listen:
            token = self.config.bridge.http.metrics_token
            app = make_app(self, self.metrics, token.get_secret_value() if token else None)
            self._http = await serve_http(app, listen)
            log.info("http_listening", listen=listen)
            if public_url is not None and token is None:
                # Chat users reach this listener for /media/; /metrics is on it too.
                log.warning(
                    "metrics_without_token",
                    listen=listen,
                    hint="bridge.http.public_url makes the listener public: set "
                    "bridge.http.metrics_token (or metrics_token_file) to protect /metrics",
                )
        self._supervisor = asyncio.get_running_loop().create_task(
            self._supervise(), name="supervisor"
        )

    # -- record sinks (archive.sinks) ----------------------------------------------------

    async def _start_sinks(self) -> None:
        if self.archive is None or not self.config.archive.sinks:
            return
        self.sinks = Sinks(
            self.db,
            self.archive.store,
            self.config.archive.sinks,
            self.config.bridge.state_dir / DB_NAME,
            busy=self._relay_busy,
        )
        await self.sinks.__aenter__()

    def _relay_busy(self) -> bool:
        """Busy: the relay handled more than `BUSY_RATE` events/s over the last quarter
        second (sinks then ship at their floor rate and catch up after)."""
        if self.relay is None:
            return False
        now = asyncio.get_running_loop().time()
        done = sum(s.handled for s in self.relay.stats.values())
        at, then = self._busy_sample
        if now - at >= 0.25:
            self._busy_sample = (now, done)
            self._busy = (done - then) / (now - at) > BUSY_RATE
        return self._busy

    async def _stop_sinks(self) -> None:
        if self.sinks is not None:
            sinks, self.sinks = self.sinks, None
            await sinks.__aexit__(None, None, None)

    def sink_states(self) -> dict[str, dict[str, Any]]:
        if self.sinks is None:
            return {}
        return {
            name: {
                "up": st.up,
                "lag": st.lag,
                "lag_seconds": round(st.lag_seconds(), 3),
                "cursor": st.cursor,
                "error": st.last_error,
            }
            for name, st in self.sinks.states().items()
        }

    def is_ready(self) -> bool:
        return all(
            s["connected"] and s["joined"] for s in self.network_states().values() if s["required"]
        )

    def status_line(self) -> str:
        states = self.network_states()
        up = sum(1 for s in states.values() if s["connected"])
        queued = self.outbox.depth() if self.outbox else 0
        return f"{up}/{len(states)} networks connected, {queued} queued"

    async def _supervise(self) -> None:
        """Watches connections (reconnect counts, logs, systemd STATUS), announces
        readiness once, and feeds the watchdog from the event loop, so a stalled loop
        gets the service restarted."""
        was = self.seen_connected
        announced = False
        status = ""
        interval = self.notifier.watchdog_interval
        last_ping = 0.0
        loop = asyncio.get_running_loop()
        while True:
            for name, adapter in list(self.adapters.items()):
                now = adapter.connected
                if name in was and now != was[name]:
                    if now:
                        self.reconnects[name] = self.reconnects.get(name, 0) + 1
                        log.info("reconnected", network=name)
                    else:
                        log.warning("disconnected", network=name)
                if now or name in was:
                    was[name] = now
            if not announced and self.is_ready():
                announced = True
                self.notifier.ready(self.status_line())
                log.info("ready", status=self.status_line())
            line = self.status_line()
            if line != status:
                status = line
                self.notifier.status(line)
            if interval is not None and loop.time() - last_ping >= interval:
                last_ping = loop.time()
                self.notifier.watchdog()
            await asyncio.sleep(min(0.25, interval or 0.25))

    def _launch(self, name: str) -> None:
        self._started[name] = asyncio.Event()
        self._tasks[name] = asyncio.get_running_loop().create_task(
            self._connect(name), name=f"connect:{name}"
        )

    async def _connect(self, name: str) -> None:
        """Starts one adapter, retrying with backoff; joins its rooms once it is in."""
        adapter = self.adapters[name]
        relay = self._relay()
        attempt = 0
        while True:
            try:
                await adapter.start(relay)
                break
            except Exception as exc:  # noqa: BLE001 - a network down at start is retried
                attempt += 1
                delay = min(START_BACKOFF_CAP, 2.0**attempt) * (0.5 + random.random())  # noqa: S311
                log.warning(
                    "connect_failed",
                    network=name,
                    error=str(exc) or repr(exc),
                    retry_in=round(delay, 1),
                )
                with contextlib.suppress(Exception):
                    await adapter.aclose()
                await asyncio.sleep(delay)
        log.info("connected", network=name)
        for room in relay.setup.router.rooms(name):
            await self._join(name, adapter, room)
        self._started[name].set()

    async def _join(self, name: str, adapter: Adapter, room: str) -> None:
        """Joins one room; then, once per room and notice text, tells its members that
        it is bridged and archived (queued like any message, so it is never lost)."""
        try:
            await adapter.join(room)
        except Exception as exc:  # noqa: BLE001 - one bad room must not stop the others
            log.error("join_failed", network=name, room=room, error=str(exc))
            return
        log.info("joined", network=name, room=room)
        await self._post_notice(name, room)

    async def _post_notice(self, name: str, room: str) -> None:
        """Queues the archive notice in a room unless it already got this text."""
        if self.archive is None:
            return
        text = await self.archive.notice_due(name, room)
        if text is None:
            return
        notice = Message(
            id=new_event_id(),
            origin=Origin(network=name, room=room, sender=NOTICE_SENDER),
            text=text,
            kind=MessageKind.NOTICE,
        )
        digest = hashlib.sha256(text.encode()).hexdigest()
        item = Item(
            network=name,
            room=room,
            event=notice,
            txn_id=txn_id_for(digest, name, room, "archive-notice"),
        )
        outbox, recorder = self._outbox(), self.recorder

        def queue(conn: sqlite3.Connection) -> None:
            enqueue_sync(conn, [item], sealer=outbox.sealer)
            recorder.record_notice(conn, notice, purpose="room", rule="archive.notice")

        await self.db.transact(queue)
        self._outbox().wake([item])
        await self.archive.notice_posted(name, room, text)

    async def ready(self, timeout: float | None = None) -> bool:
        """True once every network connected and joined its rooms."""
        try:
            async with asyncio.timeout(timeout):
                for started in list(self._started.values()):
                    await started.wait()
        except TimeoutError:
            return False
        return True

    def network_states(self) -> dict[str, dict[str, Any]]:
        return {
            name: {
                "connected": adapter.connected,
                "joined": self._started.get(name, asyncio.Event()).is_set(),
                "required": self.config.networks[name].required,
                "outbox": self.outbox.depth(name) if self.outbox else 0,
            }
            for name, adapter in self.adapters.items()
        }

    # -- reload -------------------------------------------------------------------------

    async def reload(self, config: Config) -> None:
        """Applies a new, already validated config: routes and policy at once, rooms
        joined, changed networks reconnected alone, unchanged ones untouched."""
        relay, outbox = self._relay(), self._outbox()
        old = self.config
        self.config = config
        changed = {
            n
            for n in set(old.networks) | set(config.networks)
            if old.networks.get(n) != config.networks.get(n)
        }
        # Archive first: holds are in force before anything else moves, and rooms
        # joined below get the new notice.
        hooks = self._hooks_on_reload(old, config)  # a ConfigError here changes nothing
        notice_changed = await self._reload_archive(old, config)
        self.hooks = hooks
        relay.setup = setup_for(config, hooks)
        if old.archive.sinks != config.archive.sinks:
            await self._stop_sinks()
            await self._start_sinks()
        for name in changed:
            if name in self.adapters:
                await self._drop(name)
            if name in config.networks:
                self.adapters[name] = self._build_adapter(name)
                outbox.rate_limits = self._rate_limits()
                self._launch(name)
        for name, adapter in self.adapters.items():
            if name in changed:
                continue
            new_rooms = set(relay.setup.router.rooms(name)) - set(Router(old.gateways).rooms(name))
            for room in sorted(new_rooms):
                await self._join(name, adapter, room)
        outbox.rate_limits = self._rate_limits()
        if notice_changed:
            for name in self.adapters:
                if name in changed or not self._started[name].is_set():
                    continue  # joining still: `_join` posts it
                for room in relay.setup.router.rooms(name):
                    await self._post_notice(name, room)
        log.info("config_reloaded", reconnected=sorted(changed))

    def _hooks_on_reload(self, old: Config, new: Config) -> hook_engine.Hooks:
        """New hooks when `policy.hooks` changed; the old ones are closed at stop, since
        events in flight may still be asking them."""
        if self.hooks is not None and old.policy.hooks == new.policy.hooks:
            return self.hooks
        hooks = hooks_for(new, self.hooks)
        if self.hooks is not None:
            self._retired_hooks.append(self.hooks)
        return hooks

    async def _reload_archive(self, old: Config, new: Config) -> bool:
        """Applies and records the archive settings; True when the notice changed."""
        if self.archive is None:
            if new.archive.enabled and isinstance(self.recorder, NullRecorder):
                log.warning(
                    "archive_restart_required",
                    keys=["archive.enabled"],
                    hint="the archive was off at start; restart to turn it on",
                )
            return False
        try:
            applied = await self.archive.apply(old, new)
        except Exception:  # routes and policy still apply; the error says what did not
            log.exception("archive_reload_failed")
            return False
        return "archive.notice" in applied.changed

    async def _drop(self, name: str) -> None:
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        adapter = self.adapters.pop(name)
        with contextlib.suppress(Exception):
            await adapter.aclose()

    # -- stop ---------------------------------------------------------------------------

    async def stop(self, *, drain: float | None = None) -> None:
        """Drains the outbox for up to `drain` seconds, then closes everything."""
        drain = self.config.bridge.drain_seconds if drain is None else drain
        self.notifier.stopping()
        if self.outbox is not None and drain > 0:
            idle = await self.outbox.wait_idle(drain)
            if not idle:
                log.warning("drain_incomplete", pending=self.outbox.depth())
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        if self.outbox is not None:
            await self.outbox.aclose()
        for adapter in self.adapters.values():
            try:
                async with asyncio.timeout(5):
                    await adapter.aclose()
            except Exception as exc:  # noqa: BLE001 - closing the others matters more
                log.warning("close_failed", error=str(exc) or repr(exc))
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
        if self._http is not None:
            await self._http.cleanup()
        if self.capture is not None:
            await self.capture.__aexit__(None, None, None)
        await self._stop_sinks()
        await self._close_hooks()
        if self.archive is not None:
            await self.archive.__aexit__(None, None, None)
        await self.db.aclose()
        log.info("stopped")

    async def _close_hooks(self) -> None:
        for hooks in (*self._retired_hooks, self.hooks):
            if hooks is not None:
                await hooks.aclose()
        self._retired_hooks.clear()

    async def __aenter__(self) -> Daemon:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def serve(config: Config) -> int:
    """Runs the daemon until SIGTERM/SIGINT; SIGHUP re-reads the config file."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    daemon = Daemon(config, notifier=Notifier())
    reloads: set[asyncio.Task[None]] = set()

    async def reload() -> None:
        """Reads the file in a thread (a slow disk or a huge file must not stall the
        relay) and always tells systemd READY again, whatever happened."""
        if config.source is None:
            return
        daemon.notifier.reloading()
        try:
            new = await asyncio.to_thread(load_config, config.source)
        except ConfigError as exc:
            for issue in exc.issues:
                log.error("config_invalid", issue=str(issue))
            log.error("reload_refused", reason="invalid config; still running on the old one")
        except Exception:  # a failed reload keeps the old config running
            log.exception("reload_failed")
        else:
            try:
                logs.setup(new.bridge.log.level, new.bridge.log.format)
                await daemon.reload(new)
            except Exception:  # same: the daemon goes on relaying
                log.exception("reload_failed")
        finally:
            daemon.notifier.ready(daemon.status_line())

    def on_hup() -> None:
        task = loop.create_task(reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    loop.add_signal_handler(signal.SIGINT, stopping.set)
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    try:
        await daemon.start()
        await stopping.wait()
        log.info("stopping")
    finally:
        await daemon.stop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
    return 0
