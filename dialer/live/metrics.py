"""Prometheus metrics: what one process knows, in its own registry.

Nothing is registered at import time and the library's global registry is
never used: :func:`dialer.runtime.metrics.install` builds a :class:`Metrics` with its own
``CollectorRegistry`` for one runtime and attaches it to the hooks that
exist (the worker's ``on_persisted``, the AMI client's
``on_originate_answered``).  Values the runtime already counts (AMI
reconnects, MQTT publish failures, originates sent) are read when
Prometheus scrapes, by a custom collector, rather than copied; latencies
are real histograms.

Call metrics come only from a process that runs the worker: a web process
fed by MQTT sees the same calls, and summing both would count them twice.

Labels are only ``state`` and ``outcome``, each restricted to the values of
its enum, and ``pbx``, a configured PBX name: nothing personal (numbers,
names, call ids) can become a label.
The routes that serve the registry are in ``web.routes.metrics``.
"""

from __future__ import annotations

import logging
from collections import Counter as Tally
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from dialer.domain.ports import CallSnapshot
from dialer.domain.vocabulary import LIVE_CALL_STATES, CallOutcome, CallState
from dialer.live.broadcaster import Broadcaster
from dialer.live.mqtt import MqttLiveFeed, MqttPublisher

log = logging.getLogger(__name__)

# Seconds; an Originate is answered in milliseconds unless the PBX is
# struggling, and the client gives up after its action timeout (10 s).
ORIGINATE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Seconds; a database outage holds updates back (they are retried), hence the tail.
EVENT_LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

LIVE_STATES = tuple(state.value for state in CallState if state in LIVE_CALL_STATES)
OUTCOMES = tuple(outcome.value for outcome in CallOutcome)
UNKNOWN = "unknown"


class AmiStats(Protocol):
    """The counters ``ami_bridge.client.ClientStats`` keeps."""

    @property
    def reconnects(self) -> int: ...
    @property
    def connection_losses(self) -> int: ...
    @property
    def action_timeouts(self) -> int: ...
    @property
    def originates_unknown(self) -> int: ...


class PbxLink(Protocol):
    @property
    def connected(self) -> bool: ...


class WorkerGauges(Protocol):
    """What metrics read from ``dialer.worker.call_worker.CallWorker`` at scrape time."""

    @property
    def pbx(self) -> PbxLink: ...
    @property
    def originates_sent(self) -> int: ...


@runtime_checkable
class AmiLink(Protocol):
    """What metrics read from, and hook into, ``ami_bridge.client.AmiClient``."""

    on_originate_answered: Callable[[float], None] | None

    @property
    def connected(self) -> bool: ...
    @property
    def stats(self) -> AmiStats: ...


class Metrics:
    """One process's metrics, in their own registry.

    The scrape-time sources (``worker``, ``ami``, ``mqtt``, ``sse_clients``)
    may be set at any time; :func:`install` sets the runtime's, the web
    layer sets ``sse_clients``.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        # Sources, read at scrape time; None when this process has no such part.
        self.broadcaster: Broadcaster | None = None
        self.worker: WorkerGauges | None = None
        self.ami: AmiLink | None = None
        self.mqtt: Callable[[], MqttPublisher | MqttLiveFeed | None] = lambda: None
        self.sse_clients: Callable[[], int] | None = None
        # A process without a worker: whether each PBX's worker is heard from.
        self.workers_up: Callable[[], dict[str, bool]] | None = None
        self._following = False

        # Registered by attach_worker: only the process that runs the worker has them.
        self.calls_ended = Counter(
            "dialer_calls_ended", "Calls that ended, by outcome.", ["outcome"], registry=None
        )
        self.originate_seconds = Histogram(
            "dialer_ami_originate_seconds",
            "Seconds from writing an Originate to reading the PBX's response.",
            buckets=ORIGINATE_BUCKETS,
            registry=None,
        )
        self.event_lag_seconds = Histogram(
            "dialer_ami_event_lag_seconds",
            "Seconds from reading a call's AMI news off the socket to committing "
            "its new state to the database.",
            buckets=EVENT_LAG_BUCKETS,
            registry=None,
        )
        self.http_seconds = Histogram(
            "dialer_http_request_seconds",
            "Seconds to answer an HTTP request (event streams excluded).",
            buckets=HTTP_BUCKETS,
            registry=self.registry,
        )
        self.http_requests = Counter(
            "dialer_http_requests", "HTTP requests answered.", registry=self.registry
        )
        self.http_server_errors = Counter(
            "dialer_http_server_errors",
            "HTTP requests answered with a 5xx status.",
            registry=self.registry,
        )
        self.registry.register(_ScrapeTime(self))

    def attach_worker(
        self, worker: WorkerGauges, broadcaster: Broadcaster, ami: AmiLink | None = None
    ) -> None:
        """Export call and AMI metrics from this worker (the runtime sets the hooks)."""
        if self.worker is not None:
            raise RuntimeError("these metrics already follow a worker")
        self.worker, self.broadcaster, self.ami = worker, broadcaster, ami
        self.registry.register(self.calls_ended)
        self.registry.register(self.event_lag_seconds)
        if ami is not None:
            self.registry.register(self.originate_seconds)
        for outcome in OUTCOMES:
            self.calls_ended.labels(outcome=outcome)

    # -- hooks ---------------------------------------------------------------

    def observe_originate(self, seconds: float) -> None:
        self.originate_seconds.observe(max(seconds, 0.0))

    def observe_persisted(self, snapshot: CallSnapshot, seconds: float) -> None:
        """The worker's ``on_persisted``: one call update was committed.

        The lag is measured here on the wall clock (this runs right after
        the commit) rather than taken from ``seconds``, which the worker
        computes with the service's clock: a clock that may be injected.
        """
        try:
            at = snapshot.at if snapshot.at.tzinfo else snapshot.at.replace(tzinfo=UTC)
            lag = (datetime.now(UTC) - at).total_seconds()
            self.event_lag_seconds.observe(max(lag, 0.0))
        except Exception:  # an observer must never fail the worker's batch
            log.exception("could not observe the event lag; ignored")

    def observe_http(self, seconds: float, status: int, *, stream: bool = False) -> None:
        self.http_requests.inc()
        if status >= 500:
            self.http_server_errors.inc()
        if not stream:
            self.http_seconds.observe(max(seconds, 0.0))

    def count_ended(self, outcome: str | None) -> None:
        self.calls_ended.labels(outcome=outcome if outcome in OUTCOMES else UNKNOWN).inc()

    # -- the ended-calls follower --------------------------------------------

    async def run(self) -> None:
        """Count ended calls as the broadcaster announces them, until cancelled.

        Every ending goes through the broadcaster (a PBX's news, a refused
        Originate, a request cancelled before it was dialed), which no
        single worker hook sees.  Returns at once without a worker, and when
        another task already follows.
        """
        broadcaster = self.broadcaster
        if broadcaster is None or self._following:
            return
        self._following = True
        subscription = broadcaster.subscribe(maxsize=20_000)
        try:
            async for event in subscription:
                if subscription.overflowed:
                    subscription.overflowed = False
                    log.warning("metrics fell behind the live events; some ended calls uncounted")
                if event.kind == "call" and not event.present:
                    self.count_ended(event.payload.get("outcome"))
        finally:
            broadcaster.unsubscribe(subscription)
            self._following = False


class _ScrapeTime:
    """Values that already exist elsewhere, read when Prometheus asks."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        metrics = self.metrics
        if metrics.sse_clients is not None:
            yield GaugeMetricFamily(
                "dialer_sse_clients",
                "Browsers connected to the live event stream of this process.",
                value=metrics.sse_clients(),
            )
        if metrics.workers_up is not None:
            family = GaugeMetricFamily(
                "dialer_worker_up",
                "1 while the PBX's worker writes its heartbeat, else 0 (a process without "
                "a worker, per PBX it relies on).",
                labels=["pbx"],
            )
            for pbx, up in metrics.workers_up().items():
                family.add_metric([pbx], int(up))
            yield family
        if metrics.broadcaster is not None:
            yield _calls_by_state(metrics.broadcaster)
        worker = metrics.worker
        if worker is not None:
            yield GaugeMetricFamily(
                "dialer_ami_connected",
                "1 while the AMI link is logged in and resynced, else 0.",
                value=int(worker.pbx.connected),
            )
            yield CounterMetricFamily(
                "dialer_originates",
                "Originates the PBX accepted, or sent with the answer lost.",
                value=worker.originates_sent,
            )
        ami = metrics.ami
        if ami is not None:
            stats = ami.stats
            yield CounterMetricFamily(
                "dialer_ami_reconnects",
                "Logins to the PBX after the first one.",
                value=stats.reconnects,
            )
            yield CounterMetricFamily(
                "dialer_ami_connection_losses",
                "Logged-in AMI connections that ended.",
                value=stats.connection_losses,
            )
            yield CounterMetricFamily(
                "dialer_ami_action_timeouts",
                "AMI actions the PBX did not answer in time.",
                value=stats.action_timeouts,
            )
            yield CounterMetricFamily(
                "dialer_ami_originates_unknown",
                "Originates sent whose answer never came (timeout or lost connection).",
                value=stats.originates_unknown,
            )
        yield from _mqtt(metrics.mqtt())


def _mqtt(mqtt: MqttPublisher | MqttLiveFeed | None) -> Iterable[Metric]:
    if mqtt is None:
        return
    yield GaugeMetricFamily(
        "dialer_mqtt_connected",
        "1 while connected to the MQTT broker, else 0.",
        value=int(mqtt.connected),
    )
    yield CounterMetricFamily(
        "dialer_mqtt_reconnects",
        "Times an MQTT connection that was up had to be made again.",
        value=mqtt.reconnects,
    )
    if isinstance(mqtt, MqttPublisher):
        yield CounterMetricFamily(
            "dialer_mqtt_published", "Live events published to MQTT.", value=mqtt.published
        )
        yield CounterMetricFamily(
            "dialer_mqtt_publish_failures",
            "Times publishing to MQTT failed: the connection broke or could not be made "
            "(live state is held back and republished once it is up again).",
            value=mqtt.publish_failures,
        )
    else:
        yield CounterMetricFamily(
            "dialer_mqtt_received",
            "Live events received from the workers over MQTT (a web process on its own).",
            value=mqtt.received,
        )


def _calls_by_state(broadcaster: Broadcaster) -> GaugeMetricFamily:
    tally = Tally(
        str(event.payload.get("state")) if event.payload.get("state") in LIVE_STATES else UNKNOWN
        for event in broadcaster.snapshot("call")
    )
    family = GaugeMetricFamily("dialer_calls", "Live calls, by state.", labels=["state"])
    for state in LIVE_STATES:
        family.add_metric([state], tally.get(state, 0))
    if tally.get(UNKNOWN):
        family.add_metric([UNKNOWN], tally[UNKNOWN])
    return family
