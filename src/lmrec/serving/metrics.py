"""The server's Prometheus metrics (``GET /metrics``), through ``prometheus-client``.

Every :class:`ServerMetrics` has its own :class:`~prometheus_client.CollectorRegistry`, not the
process-wide default one: a process may hold several servers (tests create one app per test, a
notebook may serve two models), and the global registry refuses a metric name registered twice.
Route *templates* (``/items/{item_id}/similar``), not raw paths, are used as labels so that fuzzed or
hostile paths cannot blow up the number of series.

Several worker processes (``lmrec serve --workers N``) share their counters and histograms through
prometheus-client's multiprocess mode: the server sets ``PROMETHEUS_MULTIPROC_DIR`` before the
workers start, each writes its values there, and whichever worker answers a scrape sums them all
(:class:`~prometheus_client.multiprocess.MultiProcessCollector`), so the counts do not depend on
which worker took the scrape. The gauges (catalogue size, users, uptime, ...) describe the state the
answering worker holds, which the workers keep equal (:mod:`lmrec.serving.sync`); they are read at
scrape time from that worker.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

#: the text exposition format ``generate_latest`` writes (names here are all legacy-valid, so it is
#: the classic 0.0.4 format, which every Prometheus version scrapes)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: request latency buckets in seconds: fine below 20 ms, where the latency goal is
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ServerMetrics:
    """The instruments the lmrec server exports, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "lmrec_http_requests_total",
            "HTTP requests by route and status.",
            ("route", "method", "status"),
            registry=r,
        )
        self.latency = Histogram(
            "lmrec_http_request_duration_seconds",
            "Request latency by route (server side).",
            ("route", "method"),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.recommendations = Counter(
            "lmrec_recommendations_total", "Lists served by re-ranking policy.", ("policy",), registry=r
        )
        self.feedback = Counter(
            "lmrec_feedback_events_total", "Feedback events logged, by event type.", ("event",), registry=r
        )
        self.bandit_updates = Counter(
            "lmrec_bandit_updates_total", "Bandit posterior updates from feedback.", ("policy",), registry=r
        )
        self.items_added = Counter("lmrec_items_added_total", "Items added through POST /items.", registry=r)
        #: gauges read at scrape time, in a registry of their own (see the module doc)
        self.gauges = _FunctionGauges()
        self.gauge_registry = CollectorRegistry(auto_describe=True)
        self.gauge_registry.register(self.gauges)

    def gauge(self, name: str, help_text: str, fn: Callable[[], float]) -> None:
        """A gauge read from ``fn`` at scrape time."""
        self.gauges.add(name, help_text, fn)

    def render(self) -> bytes:
        """Every metric in the text exposition format: this process's counters and histograms, or
        every worker's summed when the server runs several (``PROMETHEUS_MULTIPROC_DIR`` is set)."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client.multiprocess import MultiProcessCollector

            shared = CollectorRegistry()
            MultiProcessCollector(shared)
            counted = generate_latest(shared)
        else:
            counted = generate_latest(self.registry)
        return counted + generate_latest(self.gauge_registry)


class _FunctionGauges(Collector):
    """Gauges whose value a function gives at scrape time (one worker's own state)."""

    def __init__(self) -> None:
        self._gauges: dict[str, tuple[str, Callable[[], float]]] = {}

    def add(self, name: str, help_text: str, fn: Callable[[], float]) -> None:
        if name in self._gauges:
            raise ValueError(f"gauge {name} is registered twice")
        self._gauges[name] = (help_text, fn)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for name, (help_text, fn) in self._gauges.items():
            yield GaugeMetricFamily(name, help_text, value=float(fn()))


__all__ = ["CONTENT_TYPE", "LATENCY_BUCKETS", "ServerMetrics"]
