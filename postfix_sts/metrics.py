"""Prometheus metrics: the only module that imports prometheus_client.

Every label takes values from a fixed set (answer kinds, profile names from the
config, DNS types, failure reasons named in the code); a domain name is never a
label.  docs/metrics.md lists every metric.  Each :class:`Metrics` has its own
registry (with the process and platform collectors), so several can coexist in
one process, e.g. in tests.  Hot-path methods use pre-bound label children.
"""

import platform
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Info, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from postfix_sts import __version__

#: The kinds of postfix_sts.core.cache_rules.transition, created at start so that
#: rate()/increase() see their first event.
TRANSITION_KINDS = ("id-changed", "enforce-to-none", "enforce-to-testing", "txt-disappeared")

_SOURCES = ("key", "cache", "resolved")
_LATENCY_BUCKETS = (
    0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
)  # fmt: skip


class _CacheCollector(Collector):
    """Reads the cache's entry counts at scrape time (a copy taken under the GIL)."""

    def __init__(self, counts: Callable[[], Mapping[str, int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "postfix_sts_cache_entries", "Entries in the in-memory cache, by kind", labels=["kind"]
        )
        for kind, count in sorted(dict(self._counts()).items()):
            family.add_metric([kind], count)
        yield family


class _LookupCollector(Collector):
    """Lookup counts and latency, kept as plain numbers by the event loop.

    prometheus_client's own counters take a mutex on every increment; lookups are
    the hot path, so they are counted in dictionaries and lists that only the
    event loop writes, and read (copied under the GIL) at scrape time.
    """

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, str], int] = {}
        self.buckets = {source: [0] * (len(_LATENCY_BUCKETS) + 1) for source in _SOURCES}
        self.sums = dict.fromkeys(_SOURCES, 0.0)

    def collect(self) -> Iterable[Metric]:
        lookups = CounterMetricFamily(
            "postfix_sts_lookups",
            "Lookups answered, by answer kind, profile, and whether the cache answered",
            labels=["answer", "profile", "source"],
        )
        for key, count in sorted(dict(self.counts).items()):
            lookups.add_metric(list(key), count)
        yield lookups
        latency = HistogramMetricFamily(
            "postfix_sts_lookup_duration_seconds", "Time from request to answer", labels=["source"]
        )
        for source in _SOURCES:
            counts = list(self.buckets[source])
            cumulative, running = [], 0
            for bound, count in zip((*map(str, _LATENCY_BUCKETS), "+Inf"), counts, strict=True):
                running += count
                cumulative.append((bound, running))
            latency.add_metric([source], cumulative, sum_value=self.sums[source])
        yield latency


class Metrics:
    """All postfix-sts metrics."""

    def __init__(self, backend: str) -> None:
        self.registry = registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        Info("postfix_sts_build", "Build information", registry=registry).info(
            {"version": __version__, "python": platform.python_version(), "backend": backend}
        )
        self._lookups = _LookupCollector()
        registry.register(self._lookups)
        self._coalesced = Counter(
            "postfix_sts_coalesced_waiters_total",
            "Lookups that joined a resolution of the same domain already in progress",
            registry=registry,
        )
        self._dns = Counter(
            "postfix_sts_dns_queries_total",
            "DNS queries, by record type and outcome",
            ["type", "outcome"],
            registry=registry,
        )
        self._fetches = Counter(
            "postfix_sts_policy_fetches_total",
            "HTTPS policy fetches, by outcome",
            ["outcome"],
            registry=registry,
        )
        self._evictions = Counter(
            "postfix_sts_cache_evictions_total",
            "Entries evicted from the in-memory cache because it was full",
            registry=registry,
        )
        self._refreshes = Counter(
            "postfix_sts_refreshes_total",
            "Background re-checks, by outcome (ok, kept, dropped, error)",
            ["outcome"],
            registry=registry,
        )
        self.refresh_oldest_due = Gauge(
            "postfix_sts_refresh_oldest_due_seconds",
            "How long the most overdue background re-check has been waiting",
            registry=registry,
        )
        self._transitions = Counter(
            "postfix_sts_policy_transitions_total",
            "Changes of a cached policy that an operator may want to know about",
            ["kind"],
            registry=registry,
        )
        self._resolver_validating: Gauge | None = None  # exported only with DANE on
        self._connections = Gauge(
            "postfix_sts_connections_open",
            "Client connections open, by protocol",
            ["protocol"],
            registry=registry,
        )
        self._protocol_errors = Counter(
            "postfix_sts_protocol_errors_total",
            "Requests that broke the protocol framing, by protocol and reason",
            ["protocol", "reason"],
            registry=registry,
        )
        self._backend_errors = Counter(
            "postfix_sts_cache_backend_errors_total",
            "Errors reading or writing the durable cache backend",
            registry=registry,
        )
        for kind in TRANSITION_KINDS:
            self._transitions.labels(kind)
        for outcome in ("ok", "kept", "dropped", "error"):
            self._refreshes.labels(outcome)
        self._fetches.labels("ok")

    def watch_cache(self, counts: Callable[[], Mapping[str, int]]) -> None:
        self.registry.register(_CacheCollector(counts))

    def lookup(self, answer: str, profile: str, source: str, seconds: float) -> None:
        """Count one answered lookup (the hot path: no lock, no allocation once warm)."""
        lookups = self._lookups
        key = (answer, profile, source)
        lookups.counts[key] = lookups.counts.get(key, 0) + 1
        lookups.buckets[source][bisect_left(_LATENCY_BUCKETS, seconds)] += 1
        lookups.sums[source] += seconds

    def resolver_validation(self, ok: bool) -> None:
        if self._resolver_validating is None:
            self._resolver_validating = Gauge(
                "postfix_sts_resolver_validating",
                "1 if the resolver's DNSSEC validation self-check passed, 0 if not",
                registry=self.registry,
            )
        self._resolver_validating.set(1 if ok else 0)

    def coalesced(self) -> None:
        self._coalesced.inc()

    def dns_query(self, rdtype: str, outcome: str) -> None:
        self._dns.labels(rdtype, outcome).inc()

    def fetch(self, outcome: str) -> None:
        self._fetches.labels(outcome).inc()

    def eviction(self) -> None:
        self._evictions.inc()

    def refresh(self, outcome: str) -> None:
        self._refreshes.labels(outcome).inc()

    def transition(self, kind: str) -> None:
        self._transitions.labels(kind).inc()

    def connection_opened(self, protocol: str) -> None:
        self._connections.labels(protocol).inc()

    def connection_closed(self, protocol: str) -> None:
        self._connections.labels(protocol).dec()

    def protocol_error(self, protocol: str, reason: str) -> None:
        self._protocol_errors.labels(protocol, reason).inc()

    def backend_error(self) -> None:
        self._backend_errors.inc()

    def serve(self, host: str, port: int) -> Callable[[], None]:
        """Serve /metrics over HTTP from a background thread; returns a stop function."""
        server, thread = start_http_server(port, host, registry=self.registry)

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)

        return stop
