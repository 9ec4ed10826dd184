"""Prometheus metrics in the text exposition format (version 0.0.4), without a client library.

The server needs three instrument types (counters, gauges, fixed-bucket histograms) with a handful
of labels; that is a hundred lines, thread-safe, and spares a dependency. Label values are escaped
as the format requires; route *templates* (``/items/{item_id}/similar``), not raw paths, are used as
labels so that fuzzed or hostile paths cannot blow up the number of series.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: request latency buckets in seconds: fine below 20 ms, where the latency goal is
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt_labels(labels: Labels, extra: tuple[str, str] | None = None) -> str:
    items = list(labels) + ([extra] if extra else [])
    if not items:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in items) + "}"


def _fmt_value(v: float) -> str:
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if math.isnan(v):
        return "NaN"
    v = float(v)
    return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, help_text: str, label_names: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.label_names = tuple(label_names)
        self._lock = threading.Lock()

    def _key(self, labels: dict[str, str] | None) -> Labels:
        labels = labels or {}
        if set(labels) != set(self.label_names):
            raise ValueError(f"metric {self.name} takes labels {self.label_names}, got {sorted(labels)}")
        return tuple((k, str(labels[k])) for k in self.label_names)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def render(self) -> list[str]:
        raise NotImplementedError


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name: str, help_text: str, label_names: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, label_names)
        self._values: dict[Labels, float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        return self._values.get(self._key(labels), 0.0)

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return self.header() + [f"{self.name}{_fmt_labels(k)} {_fmt_value(v)}" for k, v in items]


class Gauge(_Metric):
    """A value set directly or read from a callback at scrape time."""

    kind = "gauge"

    def __init__(self, name: str, help_text: str, fn: Callable[[], float] | None = None) -> None:
        super().__init__(name, help_text)
        self._value = 0.0
        self._fn = fn

    def set(self, value: float) -> None:
        self._value = float(value)

    def render(self) -> list[str]:
        v = float(self._fn()) if self._fn is not None else self._value
        return [*self.header(), f"{self.name} {_fmt_value(v)}"]


class Histogram(_Metric):
    kind = "histogram"

    def __init__(
        self,
        name: str,
        help_text: str,
        label_names: Sequence[str] = (),
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> None:
        super().__init__(name, help_text, label_names)
        self.buckets = tuple(sorted(buckets))
        self._counts: dict[Labels, list[int]] = {}
        self._sums: dict[Labels, float] = {}

    def observe(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            counts = self._counts.setdefault(key, [0] * (len(self.buckets) + 1))
            for i, b in enumerate(self.buckets):
                if value <= b:
                    counts[i] += 1
                    break
            else:
                counts[-1] += 1
            self._sums[key] = self._sums.get(key, 0.0) + value

    def count(self, **labels: str) -> int:
        return sum(self._counts.get(self._key(labels), []))

    def render(self) -> list[str]:
        lines = self.header()
        with self._lock:
            items = sorted(self._counts.items())
            sums = dict(self._sums)
        for key, counts in items:
            running = 0
            for b, c in zip(self.buckets, counts, strict=False):
                running += c
                lines.append(f"{self.name}_bucket{_fmt_labels(key, ('le', _fmt_value(b)))} {running}")
            running += counts[-1]
            lines.append(f"{self.name}_bucket{_fmt_labels(key, ('le', '+Inf'))} {running}")
            lines.append(f"{self.name}_sum{_fmt_labels(key)} {_fmt_value(sums[key])}")
            lines.append(f"{self.name}_count{_fmt_labels(key)} {running}")
        return lines


M = TypeVar("M", bound=_Metric)


class Registry:
    """An ordered set of metrics rendered together."""

    def __init__(self) -> None:
        self._metrics: list[_Metric] = []

    def register(self, metric: M) -> M:
        if any(m.name == metric.name for m in self._metrics):
            raise ValueError(f"metric {metric.name} registered twice")
        self._metrics.append(metric)
        return metric

    def render(self) -> str:
        lines: list[str] = []
        for m in self._metrics:
            lines.extend(m.render())
        return "\n".join(lines) + "\n"


class ServerMetrics:
    """The instruments the lmrec server exports."""

    def __init__(self) -> None:
        self.registry = Registry()
        r = self.registry.register
        self.requests = r(
            Counter(
                "lmrec_http_requests_total",
                "HTTP requests by route and status.",
                ("route", "method", "status"),
            )
        )
        self.latency = r(
            Histogram(
                "lmrec_http_request_duration_seconds",
                "Request latency by route (server side).",
                ("route", "method"),
            )
        )
        self.recommendations = r(
            Counter("lmrec_recommendations_total", "Lists served by re-ranking policy.", ("policy",))
        )
        self.feedback = r(
            Counter("lmrec_feedback_events_total", "Feedback events logged, by event type.", ("event",))
        )
        self.bandit_updates = r(
            Counter("lmrec_bandit_updates_total", "Bandit posterior updates from feedback.", ("policy",))
        )
        self.items_added = r(Counter("lmrec_items_added_total", "Items added through POST /items."))
        self.gauges: dict[str, Gauge] = {}

    def gauge(self, name: str, help_text: str, fn: Callable[[], float]) -> None:
        g = Gauge(name, help_text, fn)
        self.registry.register(g)
        self.gauges[name] = g

    def render(self) -> str:
        return self.registry.render()


__all__ = ["CONTENT_TYPE", "LATENCY_BUCKETS", "Counter", "Gauge", "Histogram", "Registry", "ServerMetrics"]
