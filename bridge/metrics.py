"""Prometheus metrics of one daemon, on its own registry (two daemons in one test process
do not collide).

Counters live as plain numbers in the parts that own them (relay, outbox, supervisor);
this collector reads them at scrape time, so the hot path never touches prometheus.
Only the send-latency histogram is observed as sends complete.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from imbridge.daemon import Daemon

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    def __init__(self, daemon: Daemon) -> None:
        self.registry = CollectorRegistry()
        self.send_seconds = Histogram(
            "imbridge_send_seconds",
            "Time from a send attempt to its acceptance by the network",
            ["network"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_DaemonCollector(daemon))

    def observe_send(self, network: str, seconds: float) -> None:
        self.send_seconds.labels(network=network).observe(seconds)


class _DaemonCollector(Collector):
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def collect(self) -> Iterator[Metric]:
        d = self.daemon
        labels = ["network"]
        connected = GaugeMetricFamily(
            "imbridge_network_connected", "1 if the network is connected", labels=labels
        )
        reconnects = CounterMetricFamily(
            "imbridge_network_reconnects", "Times the network connection came back", labels=labels
        )
        received = CounterMetricFamily(
            "imbridge_messages_in", "Events received from the network", labels=labels
        )
        sent = CounterMetricFamily(
            "imbridge_messages_out", "Deliveries the network accepted", labels=labels
        )
        denied = CounterMetricFamily(
            "imbridge_messages_denied",
            "Deliveries from the network denied by policy",
            labels=labels,
        )
        failed = CounterMetricFamily(
            "imbridge_messages_failed",
            "Deliveries to the network that failed for good",
            labels=labels,
        )
        shed = CounterMetricFamily(
            "imbridge_messages_shed",
            "Deliveries to the network shed because the room's backlog was full"
            " (archived as failed: backlog full)",
            labels=labels,
        )
        depth = GaugeMetricFamily(
            "imbridge_outbox_depth", "Deliveries waiting for the network", labels=labels
        )
        age = GaugeMetricFamily(
            "imbridge_outbox_oldest_age_seconds",
            "Age of the oldest waiting delivery",
            labels=labels,
        )
        for name, adapter in d.adapters.items():
            connected.add_metric([name], 1.0 if adapter.connected else 0.0)
            reconnects.add_metric([name], float(d.reconnects.get(name, 0)))
            rstats = d.relay.stats.get(name) if d.relay else None
            received.add_metric([name], float(rstats.received if rstats else 0))
            denied.add_metric([name], float(rstats.denied if rstats else 0))
            ostats = d.outbox.stats.get(name) if d.outbox else None
            sent.add_metric([name], float(ostats.sent if ostats else 0))
            failed.add_metric([name], float(ostats.failed if ostats else 0))
            shed.add_metric([name], float(ostats.shed if ostats else 0))
            depth.add_metric([name], float(d.outbox.depth(name) if d.outbox else 0))
            age.add_metric([name], d.outbox.oldest_age(name) if d.outbox else 0.0)
        archived = CounterMetricFamily(
            "imbridge_archive_records", "Events recorded in the archive by this process"
        )
        archived.add_metric([], float(d.relay.archived if d.relay else 0))
        yield from (connected, reconnects, received, sent, denied, failed, shed, depth, age)
        yield archived
        yield from _instance_metrics(d)
        yield from _hook_metrics(d)
        yield from _sink_metrics(d)


def _instance_metrics(d: Daemon) -> Iterator[Metric]:
    """Which instance runs each network (several instances on one PostgreSQL state), and
    whether the instances' configs agree."""
    owner = GaugeMetricFamily(
        "imbridge_network_owner",
        "1 for the instance that runs the network, as this instance last saw it",
        labels=["network", "instance"],
    )
    for name in d.adapters:
        running = d.leases.owner(name)
        if running is not None:
            owner.add_metric([name, running], 1.0)
    mismatch = GaugeMetricFamily(
        "imbridge_instances_config_mismatch",
        "Live instances on the same state whose config differs from this one's",
    )
    mismatch.add_metric([], float(len(d.leases.mismatch)))
    yield owner
    yield mismatch


def _hook_metrics(d: Daemon) -> Iterator[Metric]:
    """Per policy hook: calls, failures by the `on_error` that applied, answers."""
    requests = CounterMetricFamily(
        "imbridge_policy_hook_requests", "Events a policy hook was asked about", labels=["hook"]
    )
    cached = CounterMetricFamily(
        "imbridge_policy_hook_cached",
        "Events answered from the per-event cache, without asking again",
        labels=["hook"],
    )
    errors = CounterMetricFamily(
        "imbridge_policy_hook_errors",
        "Policy hook calls that failed or timed out, by the on_error applied",
        labels=["hook", "on_error"],
    )
    decisions = CounterMetricFamily(
        "imbridge_policy_hook_decisions",
        "Policy hook answers per destination, by action",
        labels=["hook", "action"],
    )
    seconds = CounterMetricFamily(
        "imbridge_policy_hook_seconds", "Time spent waiting for policy hooks", labels=["hook"]
    )
    http = CounterMetricFamily(
        "imbridge_policy_hook_http_requests",
        "HTTP requests sent to a hook; batched, fewer than the events asked",
        labels=["hook"],
    )
    for hook in d.hooks.hooks if d.hooks is not None else ():
        sent = getattr(hook, "batches", None)  # HTTP hooks only
        if isinstance(sent, int):
            http.add_metric([hook.name], float(sent))
    for name, st in d.hooks.stats.items() if d.hooks is not None else ():
        requests.add_metric([name], float(st.requests))
        cached.add_metric([name], float(st.cached))
        seconds.add_metric([name], st.seconds)
        for on_error in ("deny", "allow"):
            errors.add_metric([name, on_error], float(st.errors[on_error]))
        for action in ("allow", "deny", "redact"):
            decisions.add_metric([name, action], float(st.decisions[action]))
    yield from (requests, cached, errors, decisions, seconds, http)


def _sink_metrics(d: Daemon) -> Iterator[Metric]:
    """Per record sink: how far behind the archive it is, what it shipped, failures."""
    lag = GaugeMetricFamily(
        "imbridge_sink_lag_records", "Archive records not yet shipped", labels=["sink"]
    )
    lag_s = GaugeMetricFamily(
        "imbridge_sink_lag_seconds",
        "Age of the oldest archive record not yet shipped",
        labels=["sink"],
    )
    sent = CounterMetricFamily(
        "imbridge_sink_records_sent", "Records shipped (heads included)", labels=["sink"]
    )
    errors = CounterMetricFamily(
        "imbridge_sink_errors", "Failed attempts to ship a batch", labels=["sink"]
    )
    up = GaugeMetricFamily("imbridge_sink_up", "1 if the last batch was shipped", labels=["sink"])
    for name, st in d.sinks.states().items() if d.sinks is not None else ():
        lag.add_metric([name], float(st.lag))
        lag_s.add_metric([name], st.lag_seconds())
        sent.add_metric([name], float(st.sent))
        errors.add_metric([name], float(st.errors))
        up.add_metric([name], 1.0 if st.up else 0.0)
    yield from (lag, lag_s, sent, errors, up)
