"""The server's Prometheus metrics (``GET /metrics``), through ``prometheus-client``.

Every :class:`ServerMetrics` has its own :class:`~prometheus_client.CollectorRegistry`, not the
process-wide default one: a process may hold several servers (tests create one app per test, a
notebook may serve two models), and the global registry refuses a metric name registered twice.
Route *templates* (``/items/{item_id}/similar``), not raw paths, are used as labels so that fuzzed or
hostile paths cannot blow up the number of series.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

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
        self.gauges: dict[str, Gauge] = {}

    def gauge(self, name: str, help_text: str, fn: Callable[[], float]) -> Gauge:
        """A gauge read from ``fn`` at scrape time."""
        g = Gauge(name, help_text, registry=self.registry)
        g.set_function(fn)
        self.gauges[name] = g
        return g

    def render(self) -> bytes:
        """The registry in the text exposition format."""
        return generate_latest(self.registry)


__all__ = ["CONTENT_TYPE", "LATENCY_BUCKETS", "ServerMetrics"]
