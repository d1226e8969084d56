"""Assembles the parts and owns their tasks: database, adapters, relay, outbox.

Lifecycle: `start` opens the state, resumes the outbox, and connects every network in
the background (a network that is down at start is retried with backoff while the others
relay); `ready` tells when every network has connected and joined its rooms; `stop`
drains in-flight sends for up to `bridge.drain_seconds` and closes everything, leaving
what was not delivered in the database for the next start. `reload` applies a new config
without touching networks whose section did not change.

Ownership: every task the daemon starts is a child of its `TaskTree`, and everything it
opens is entered in one `AsyncExitStack`, so `stop` (or a start that fails half-way)
closes exactly what was opened, in reverse order, whatever fails on the way. A network's
task that fails is logged with its network and restarted by the supervisor after a
backoff; a failure of the supervisor itself stops the daemon with that error (`failed`).
`reload` and `stop` take one lock: a SIGTERM during a SIGHUP reload stops the daemon
once the reload is done, never beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import signal
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import structlog

from imbridge import logs, registry, textlinks
from imbridge.adapter import Adapter, Cursors, NetworkConfig, RateLimit
from imbridge.archive import NullRecorder, Recorder
from imbridge.archive.capture import AttachmentCapture
from imbridge.archive.files import FileStore
from imbridge.archive.sealing import Sealer
from imbridge.archive.service import ArchiveService
from imbridge.archive.store import ARCHIVE_MIGRATIONS, ArchiveStore
from imbridge.config.load import load_config
from imbridge.config.report import log_config_error
from imbridge.config.schema import Config
from imbridge.cursors import NetworkCursors
from imbridge.db import Conn, Database, location
from imbridge.dialect import SQLITE
from imbridge.errors import ConfigError
from imbridge.events import EventId, Message, MessageKind, Origin, RemoteId, new_event_id
from imbridge.exitcodes import EXIT_FAILURE, EXIT_OK
from imbridge.hooks import engine as hook_engine
from imbridge.leases import SINKS_LEASE, Leases, SharedLeases, SoleOwner, shared_digest
from imbridge.medialinks import MediaLinks, load_key
from imbridge.membership_relay import MembershipRelay
from imbridge.outbox import Item, Outbox, enqueue_sync, txn_id_for
from imbridge.policy import compile_policy
from imbridge.relay import NOTICE_SENDER, Relay, Setup
from imbridge.router import Router
from imbridge.sdnotify import Notifier
from imbridge.sinks.feed import SINK_MIGRATIONS
from imbridge.tasks import TaskTree
from imbridge.textlinks import TextLinks

if TYPE_CHECKING:
    from imbridge.listener import Listener
    from imbridge.metrics import Metrics
    from imbridge.sinks.runner import Sinks

log = structlog.get_logger("imbridge.daemon")

AdapterBuilder = Callable[[str, NetworkConfig, Cursors], Adapter]
START_BACKOFF_CAP = 60.0
RESTART_BACKOFF_CAP = 60.0
CLOSE_TIMEOUT = 5.0
BUSY_RATE = 400.0
WATCH_SECONDS = 0.2
"""How often an instance sharing its state looks for deliveries other instances queued."""
FIRST_LEASES_TIMEOUT = 10.0
"""Events/s past which the relay counts as busy, and record sinks yield to it."""


def setup_for(config: Config, hooks: hook_engine.Hooks | None = None) -> Setup:
    return Setup(
        router=Router(config.gateways),
        policy=compile_policy(config.policy),
        networks=config.networks,
        log_text=config.bridge.log.message_text,
        hooks=hooks if hooks else None,
        moderator_deletes=config.policy.relay_moderator_deletes,
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
        self._metrics: Metrics | None = None
        self.reconnects: dict[str, int] = {}
        self.seen_connected: dict[str, bool] = {}
        """What the supervisor last saw of each network (from its first connection on)."""
        self._http: Listener | None = None
        self.media_links: MediaLinks | None = None
        self.text_links: TextLinks | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self.adapters: dict[str, Adapter] = {}
        self.leases: Leases = SoleOwner()
        self.db = Database(
            location(config.bridge),
            {
                "archive": ARCHIVE_MIGRATIONS,
                "sinks": SINK_MIGRATIONS,
                "textlinks": textlinks.MIGRATIONS,
            },
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
        """Each network's connect-and-join task, a child of `_tree`."""
        self._tree = TaskTree("daemon", on_failure=self._task_failed)
        self._stack = AsyncExitStack()
        self._lifecycle = asyncio.Lock()
        """Held by reload and stop: neither runs beside the other."""
        self._stopped = False
        self._failed_networks: dict[str, tuple[int, float]] = {}
        """Networks whose task failed: (failures in a row, loop time of the restart)."""
        self.failure: str | None = None
        """Why the daemon cannot go on (its supervisor failed); `failed` is then set."""
        self.failed = asyncio.Event()
        key = config.archive.encryption_key
        self.sealer = Sealer(key.get_secret_value() if key is not None else None)
        """Seals what the relay and the adapters keep outside the archive (a key change
        needs a restart, like the archive's own)."""

    # -- assembly -----------------------------------------------------------------------

    def _build_adapter(self, name: str) -> Adapter:
        net = self.config.networks[name]
        cursors = NetworkCursors(self.db, name, self.sealer, waiting=self._waiting_event)
        if self._factory is not None:
            return self._factory(name, net, cursors)
        cls = registry.adapter_class(net.type)
        return registry.build(
            cls,
            name,
            net,
            cursors,
            media_links=self.media_links,
            state_dir=self.config.bridge.state_dir,
        )

    @property
    def metrics(self) -> Metrics:
        """Built on first use: prometheus-client (about 1 MiB resident) is loaded by a
        daemon that serves /metrics (`bridge.http.listen`), never by one nobody can ask."""
        if self._metrics is None:
            from imbridge.metrics import Metrics  # noqa: PLC0415 - see above

            self._metrics = Metrics(self)
        return self._metrics

    def _observe_send(self, network: str, seconds: float) -> None:
        if self._metrics is not None:
            self._metrics.observe_send(network, seconds)

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
        """Opens everything in the exit stack; a failure closes what was opened."""
        try:
            await self._start()
        except BaseException:
            await self._close()
            raise

    async def _start(self) -> None:
        stack = self._stack
        await self.db.open()
        stack.push_async_callback(self._step, "database", self.db.aclose)
        # Given up after the networks and the outbox are closed: a successor never
        # sends beside this instance.
        stack.push_async_callback(self._step, "leases", self._close_leases)
        self.leases = self._make_leases()
        if self.archive is not None:
            await self.archive.record_start(self.config)
            await self.archive.__aenter__()
            stack.push_async_callback(self._step, "archive", self.archive.__aexit__)
        public_url = self.config.bridge.http.public_url
        if public_url is not None:
            self.media_links = MediaLinks.from_state(
                self.config.bridge.state_dir,
                public_url,
                lifetime_days=self.config.bridge.http.media_link_days,
            )
            self.text_links = self._text_links(public_url)
        for name in self.config.networks:
            self.adapters[name] = self._build_adapter(name)
        stack.push_async_callback(self._close_adapters)
        self.outbox = Outbox(
            self.db, self.adapters, self._rate_limits(), self.recorder, sealer=self.sealer
        )
        self.hooks = hooks_for(self.config)
        self.relay = Relay(
            self.db,
            setup_for(self.config, self.hooks),
            self.adapters,
            self.outbox,
            self.recorder,
            text_links=self.text_links,
        )
        if self.config.bridge.http.listen:
            _ = self.metrics  # /metrics will be served: its histogram counts from the start
        self.outbox.observe_send = self._observe_send
        # Closed after the outbox and the networks' tasks, which may still be asking them.
        stack.push_async_callback(self._step, "policy_hooks", self._close_hooks)
        stack.push_async_callback(self._step, "outbox", self._close_outbox)
        if self.archive is not None and self.config.archive.attachments.enabled:
            files = FileStore.for_archive(self.config.archive, self.config.bridge.state_dir)
            self.capture = AttachmentCapture(self.db, self.archive.store, files, self.adapters)
            await self.capture.__aenter__()
            stack.push_async_callback(self._step, "attachment_capture", self.capture.__aexit__)
        await self._tree.__aenter__()
        stack.push_async_callback(self._step, "tasks", self._tree.aclose)
        membership = MembershipRelay(self.db, self.outbox, self.recorder, sender=NOTICE_SENDER)
        self.relay.membership = membership
        self._tree.spawn(membership.run(), name="membership")
        await self._start_sinks()
        stack.push_async_callback(self._step, "sinks", self._stop_sinks)
        pending = await self.outbox.load()
        log.info(
            "started",
            networks=len(self.adapters),
            gateways=len(self.config.gateways),
            pending=pending,
        )
        await self._start_leases()
        await self._serve_http(stack)
        self._supervisor = self._tree.spawn(self._supervise(), name="supervisor")

    def _make_leases(self) -> Leases:
        """On a PostgreSQL state, instances share out the networks and the sinks
        (`imbridge.leases`); with SQLite this process runs them all."""
        if self.db.dialect == SQLITE:
            return SoleOwner()
        return SharedLeases(
            str(location(self.config.bridge)),
            self._leased(self.config),
            config_digest=shared_digest(self.config),
            gained=self._gained,
            lost=self._lost,
            instance=self.config.bridge.instance,
        )

    async def _start_leases(self) -> None:
        """Runs every network, or those whose lease this instance takes, now and later."""
        leases = self.leases
        if not isinstance(leases, SharedLeases):
            for name in self.adapters:
                self._launch(name)
            return
        outbox = self._outbox()
        outbox.owns, outbox.shared = leases.owns, True
        self._tree.spawn(leases.run(), name="leases")
        self._tree.spawn(outbox.watch(WATCH_SECONDS), name="outbox-watch")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(FIRST_LEASES_TIMEOUT):
                await leases.first_round.wait()
        log.info("instance_started", instance=leases.instance, runs=sorted(leases.held))

    @staticmethod
    def _leased(config: Config) -> list[str]:
        """What instances share out: each network, and the record sinks as one."""
        return [*config.networks, *([SINKS_LEASE] if config.archive.sinks else [])]

    async def _close_leases(self) -> None:
        if isinstance(self.leases, SharedLeases):
            await self.leases.aclose()

    async def _gained(self, name: str) -> None:
        """This instance took `name`'s lease: its queue first, then its connection."""
        if name == SINKS_LEASE:
            await self._start_sinks()
            return
        if name not in self.adapters:
            return
        await self._outbox().adopt(name)
        self._launch(name)

    async def _lost(self, name: str) -> None:
        """Another instance may take `name` now: stop sending and receiving at once;
        a fresh, unconnected adapter keeps describing the network to the relay."""
        if name == SINKS_LEASE:
            await self._stop_sinks()
            return
        if name not in self.adapters or (self._stopped and self._tree.closed):
            return
        log.warning("lease_lost", network=name, instance=self.leases.instance)
        await self._outbox().release(name)
        await self._drop(name)
        self._started.pop(name, None)
        self.adapters[name] = self._build_adapter(name)

    async def _serve_http(self, stack: AsyncExitStack) -> None:
        """The listener (metrics, readiness, media and text links, the console, the
        networks' own routes), when `bridge.http.listen` asks for one."""
        listen = self.config.bridge.http.listen
        if listen:
            # aiohttp's server side: about 2 MiB resident, loaded only for a listener.
            from imbridge.endpoints import (  # noqa: PLC0415
                is_public,
                make_app,
                media_limiter,
                serve_http,
            )

            token = self.config.bridge.http.metrics_token
            app = make_app(
                self,
                self.metrics,
                token.get_secret_value() if token else None,
                media_limiter=media_limiter(self.config.bridge.http),
                public=is_public(self.config.bridge.http),
            )
            if self.config.console.enabled:
                from imbridge.console.server import mounted  # noqa: PLC0415 - jinja2, argon2

                await stack.enter_async_context(mounted(app, self.config, listen))
                log.info("console_enabled", url=f"http://{listen}/console/")
            self._http = await serve_http(app, listen, self.config.bridge.http)
            stack.push_async_callback(self._step, "http", self._http.cleanup)
            log.info("http_listening", listen=listen)
            if is_public(self.config.bridge.http) and token is None:
                log.warning(
                    "metrics_without_token",
                    listen=listen,
                    hint="the listener is reachable beyond this host (a non-loopback listen "
                    "or public_url): anyone there reads /metrics, and /readyz shows "
                    "network states only to a bearer of the token: set "
                    "bridge.http.metrics_token (or metrics_token_file)",
                )
        elif self.config.console.enabled:
            log.warning(
                "console_not_served",
                hint="console.enabled needs bridge.http.listen, or run `imbridge console`",
            )

    def _task_failed(self, name: str, exc: BaseException) -> None:
        """Called by the task tree (which has logged the error): a network's task is
        restarted by the supervisor; anything else stops the daemon."""
        network = name.removeprefix("connect:")
        if name != network:
            if network not in self.adapters:
                return  # dropped by a reload meanwhile: nothing to restart
            count, _ = self._failed_networks.get(network, (0, 0.0))
            delay = min(RESTART_BACKOFF_CAP, 2.0**count) * (0.5 + random.random())  # noqa: S311
            self._failed_networks[network] = (count + 1, asyncio.get_running_loop().time() + delay)
            log.warning("network_restarting", network=network, retry_in=round(delay, 1))
            return
        self.failure = f"task {name} failed: {type(exc).__name__}: {exc}"
        self.failed.set()

    async def _restart_failed(self) -> None:
        """Rebuilds and reconnects each network whose task failed, once its backoff is
        over; its failure count is kept until it has joined its rooms again."""
        now = asyncio.get_running_loop().time()
        for name, (count, at) in list(self._failed_networks.items()):
            if at > now or name not in self.adapters or self._tree.closed:
                continue
            if not self.leases.owns(name):
                self._failed_networks.pop(name, None)
                continue
            self._failed_networks[name] = (count, float("inf"))  # restarting: not twice
            await self._drop(name)
            self.adapters[name] = self._build_adapter(name)
            self._outbox().rate_limits = self._rate_limits()
            self._launch(name)

    # -- record sinks (archive.sinks) ----------------------------------------------------

    async def _start_sinks(self) -> None:
        if self.archive is None or not self.config.archive.sinks:
            return
        if not self.leases.owns(SINKS_LEASE):
            return  # another instance ships the records: one cursor, one sender
        # The sinks' transports and formats (about 0.7 MiB) load only when one is configured.
        from imbridge.sinks.runner import Sinks  # noqa: PLC0415

        self.sinks = Sinks(
            self.db,
            self.archive.store,
            self.config.archive.sinks,
            location(self.config.bridge),
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
        """The one readiness rule (systemd READY, /readyz, `imbridge status`): every
        required network connected and in its rooms; optional ones may be down."""
        return all(
            (s["connected"] and s["joined"]) if s["here"] else s["owner"] is not None
            for s in self.network_states().values()
            if s["required"]
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
            if self._failed_networks:
                async with self._lifecycle:  # not beside a reload replacing adapters
                    await self._restart_failed()
            await asyncio.sleep(min(0.25, interval or 0.25))

    def _launch(self, name: str) -> None:
        # One event per network for the daemon's life: `ready` may be waiting on it.
        self._started.setdefault(name, asyncio.Event()).clear()
        self._tasks[name] = self._tree.spawn(
            self._connect(name), name=f"connect:{name}", network=name
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
        # The adapter logs `connected` and `joined` itself (it alone sees its reconnects
        # and rejoins): logging them here too doubled every line.
        for room in relay.setup.router.rooms(name):
            await self._join(name, adapter, room)
        self._started[name].set()
        self._failed_networks.pop(name, None)

    async def _join(self, name: str, adapter: Adapter, room: str) -> None:
        """Joins one room; then, once per room and notice text, tells its members that
        it is bridged and archived (queued like any message, so it is never lost)."""
        try:
            await adapter.join(room)
        except Exception as exc:  # noqa: BLE001 - one bad room must not stop the others
            log.error("join_failed", network=name, room=room, error=str(exc))
            return
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

        def queue(conn: Conn) -> None:
            enqueue_sync(conn, [item], sealer=outbox.sealer)
            recorder.record_notice(conn, notice, purpose="room", rule="archive.notice")

        await self.db.transact(queue)
        self._outbox().wake([item])
        await self.archive.notice_posted(name, room, text)

    async def ready(self, timeout: float | None = None) -> bool:
        """True once every network, optional ones too, has connected and joined its
        rooms (what a test or a drill waits for; `is_ready` is the service's rule)."""
        try:
            async with asyncio.timeout(timeout):
                while waiting := [e for e in self._started.values() if not e.is_set()]:
                    await waiting[0].wait()
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
                "owner": self.leases.owner(name),
                "here": self.leases.owns(name),
            }
            for name, adapter in self.adapters.items()
        }

    # -- reload -------------------------------------------------------------------------

    async def reload(self, config: Config) -> bool:
        """Applies a new, already validated config: routes and policy at once, rooms
        joined, changed networks reconnected alone, unchanged ones untouched. False
        (and nothing applied) once the daemon is stopping."""
        async with self._lifecycle:
            if self._stopped:
                log.warning("reload_skipped", reason="the daemon is stopping")
                return False
            await self._reload(config)
            return True

    async def _reload(self, config: Config) -> None:
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
        await self._leave_removed(Router(old.gateways), relay.setup.router)
        await self._rebuild(changed, config)
        if isinstance(self.leases, SharedLeases):
            self.leases.set_networks(self._leased(config))  # new ones: at its next round
            self.leases.config_digest = shared_digest(config)  # others compare at theirs
        for name, adapter in self.adapters.items():
            if name in changed or not self.leases.owns(name):
                continue
            new_rooms = set(relay.setup.router.rooms(name)) - set(Router(old.gateways).rooms(name))
            for room in sorted(new_rooms):
                await self._join(name, adapter, room)
        outbox.rate_limits = self._rate_limits()
        if notice_changed:
            for name in self.adapters:
                if name in changed or name not in self._started or not self._started[name].is_set():
                    continue  # joining still: `_join` posts it
                for room in relay.setup.router.rooms(name):
                    await self._post_notice(name, room)
        log.info("config_reloaded", reconnected=sorted(changed))

    async def _rebuild(self, changed: set[str], config: Config) -> None:
        """Closes the networks a reload changed or removed, and starts the changed ones
        anew (those this instance runs)."""
        for name in changed:
            if name in self.adapters:
                await self._drop(name)
            self._failed_networks.pop(name, None)
            if name not in config.networks:
                self._started.pop(name, None)
            else:
                self.adapters[name] = self._build_adapter(name)
                self._outbox().rate_limits = self._rate_limits()
                if self.leases.owns(name):
                    self._launch(name)

    async def _leave_removed(self, old: Router, new: Router) -> None:
        """Leaves the rooms no gateway uses any more, before a changed network is
        rebuilt: otherwise the relay sits on in them (a Matrix account stays a member
        across reconnects) and they keep reaching the archive."""
        for name, adapter in list(self.adapters.items()):
            kept = {room.casefold() for room in new.rooms(name)}
            for room in old.rooms(name):
                if room.casefold() in kept:
                    continue
                try:
                    async with asyncio.timeout(CLOSE_TIMEOUT):
                        await adapter.leave(room)
                except Exception as exc:  # noqa: BLE001 - the other rooms still go
                    log.warning("leave_failed", network=name, room=room, error=str(exc))

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
            await self._tree.cancel(task)
        adapter = self.adapters.pop(name)
        await self._close_adapter(name, adapter)

    async def _close_adapter(self, name: str, adapter: Adapter) -> None:
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await adapter.aclose()
        except Exception as exc:  # noqa: BLE001 - closing the others matters more
            log.warning("close_failed", network=name, error=str(exc) or repr(exc))

    async def _close_outbox(self) -> None:
        if self.outbox is not None:
            await self.outbox.aclose()

    async def _close_adapters(self) -> None:
        for name, adapter in list(self.adapters.items()):
            await self._close_adapter(name, adapter)

    # -- stop ---------------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stopped

    async def stop(self, *, drain: float | None = None) -> None:
        """Drains the outbox for up to `drain` seconds, then closes everything it opened
        (in reverse order; a step that fails is logged and the next still runs). Waits
        for a reload under way; safe twice."""
        async with self._lifecycle:
            if self._stopped:
                return
            self._stopped = True
            drain = self.config.bridge.drain_seconds if drain is None else drain
            try:
                self.notifier.stopping()
                await self._flush_membership()
                if self.outbox is not None and drain > 0:
                    idle = await self.outbox.wait_idle(drain)
                    if not idle:
                        log.warning("drain_incomplete", pending=self.outbox.depth())
            finally:
                await self._close()
                log.info("stopped")

    async def _flush_membership(self) -> None:
        """Queues the open debounce windows' lines, so a clean stop drains them too."""
        if self.relay is None or self.relay.membership is None:
            return
        try:
            await self.relay.membership.flush()
        except Exception:  # stopping matters more than these notices
            log.exception("membership_flush_failed")

    def _text_links(self, public_url: str) -> TextLinks:
        """Long messages' full text lives as long as the archive keeps its records."""
        archive = self.config.archive
        days = (
            archive.retention_days if archive.enabled else self.config.bridge.http.media_link_days
        )
        key = load_key(self.config.bridge.state_dir)
        return TextLinks(key, public_url, lifetime_days=days)

    async def _close(self) -> None:
        self._stopped = True
        await self._stack.aclose()

    @staticmethod
    async def _step(what: str, close: Callable[..., Awaitable[object]]) -> None:
        """One closing step of the exit stack: its failure is logged, never raised, so
        the database is closed whatever failed before it."""
        try:
            await close()
        except Exception:
            log.exception("close_failed", part=what)

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
    """Runs the daemon until SIGTERM/SIGINT (exit 0) or until it fails (exit 1, with
    the reason logged); SIGHUP re-reads the config file. Reloads are tasks of this
    function's own tree, and a stop waits for the reload under way."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    daemon = Daemon(config, notifier=Notifier())

    async def reload() -> None:
        """Reads the file in a thread (a slow disk or a huge file must not stall the
        relay) and tells systemd READY again, whatever happened, unless stopping."""
        if config.source is None or daemon.stopping:
            return
        daemon.notifier.reloading()
        try:
            new = await asyncio.to_thread(load_config, config.source)
        except ConfigError as exc:
            log_config_error(exc, log)
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
            if not daemon.stopping:
                daemon.notifier.ready(daemon.status_line())

    async with TaskTree("signals") as reloads:

        def on_hup() -> None:
            if not reloads.closed:
                reloads.spawn(reload(), name="reload")

        loop.add_signal_handler(signal.SIGTERM, stopping.set)
        loop.add_signal_handler(signal.SIGINT, stopping.set)
        loop.add_signal_handler(signal.SIGHUP, on_hup)
        try:
            await daemon.start()
            await _first(stopping.wait(), daemon.failed.wait())
            if daemon.failure is not None:
                log.error("daemon_failed", error=daemon.failure)
            else:
                log.info("stopping")
        finally:
            await daemon.stop()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
    return EXIT_FAILURE if daemon.failure is not None else EXIT_OK


async def _first(*waits: Awaitable[object]) -> None:
    """Returns once any of `waits` is done; cancels the others."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)
