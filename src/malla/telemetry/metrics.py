"""Istio's standard metrics for one workload: counters and histograms by label values, in memory.

In: label dicts (``labels``) and observations from the access-log server's
thread. Out: Prometheus exposition text (``exposition()``) with Istio's
names and buckets (``istio_request_duration_milliseconds`` in ms with
Istio's default buckets, the byte histograms in powers of ten). A
``prometheus_client`` collector reads a consistent copy under a lock, so a
scrape never sees half an update; no ``_created`` series are emitted (Istio
has none).
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from malla.telemetry.labels import HTTP_LABELS, TCP_LABELS

REQUESTS_TOTAL = "istio_requests_total"
REQUEST_DURATION = "istio_request_duration_milliseconds"
REQUEST_BYTES = "istio_request_bytes"
RESPONSE_BYTES = "istio_response_bytes"
TCP_SENT = "istio_tcp_sent_bytes_total"
TCP_RECEIVED = "istio_tcp_received_bytes_total"
TCP_OPENED = "istio_tcp_connections_opened_total"
TCP_CLOSED = "istio_tcp_connections_closed_total"
# Istio's defaults (its stats filter's histogram buckets).
DURATION_BUCKETS = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000,
                    1800000, 3600000)
BYTES_BUCKETS = (1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000, 1000000000)
_HELP = {
    REQUESTS_TOTAL: "Requests, as reported by the source and the destination proxy.",
    REQUEST_DURATION: "Request duration in milliseconds.",
    REQUEST_BYTES: "Request size in bytes (headers and body, as received).",
    RESPONSE_BYTES: "Response size in bytes (headers and body, as sent).",
    TCP_SENT: "Bytes sent to the downstream peer of TCP connections.",
    TCP_RECEIVED: "Bytes received from the downstream peer of TCP connections.",
    TCP_OPENED: "TCP connections opened.",
    TCP_CLOSED: "TCP connections closed.",
}
_COUNTERS = ((REQUESTS_TOTAL, HTTP_LABELS), (TCP_SENT, TCP_LABELS), (TCP_RECEIVED, TCP_LABELS),
             (TCP_OPENED, TCP_LABELS), (TCP_CLOSED, TCP_LABELS))
_HISTOGRAMS = ((REQUEST_DURATION, DURATION_BUCKETS), (REQUEST_BYTES, BYTES_BUCKETS), (RESPONSE_BYTES, BYTES_BUCKETS))

LabelValues = tuple[str, ...]


@dataclass
class _Histogram:
    buckets: Sequence[float]
    counts: list[int] = field(default_factory=list)  # per bucket, not cumulative; last is +Inf
    total: float = 0.0

    def observe(self, value: float) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.buckets) + 1)
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, float]]:
        out, running = [], 0
        for bound, count in zip([*map(_bound_text, self.buckets), "+Inf"], self.counts, strict=True):
            running += count
            out.append((bound, float(running)))
        return out


def _bound_text(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)


class IstioMetrics:
    """Thread-safe store of Istio's series; ``record_*`` from any thread, ``exposition()`` to scrape."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, dict[LabelValues, float]] = {name: {} for name, _ in _COUNTERS}
        self._histograms: dict[str, dict[LabelValues, _Histogram]] = {name: {} for name, _ in _HISTOGRAMS}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))

    def record_request(self, labels: Mapping[str, str], *, duration_ms: float, request_bytes: int,
                       response_bytes: int) -> None:
        key = tuple(labels[name] for name in HTTP_LABELS)
        with self._lock:
            series = self._counters[REQUESTS_TOTAL]
            series[key] = series.get(key, 0.0) + 1
            for name, value in ((REQUEST_DURATION, duration_ms), (REQUEST_BYTES, request_bytes),
                                (RESPONSE_BYTES, response_bytes)):
                buckets = DURATION_BUCKETS if name == REQUEST_DURATION else BYTES_BUCKETS
                self._histograms[name].setdefault(key, _Histogram(buckets)).observe(float(value))

    def record_tcp(self, labels: Mapping[str, str], *, sent: int = 0, received: int = 0, opened: int = 0,
                   closed: int = 0) -> None:
        key = tuple(labels[name] for name in TCP_LABELS)
        with self._lock:
            for name, value in ((TCP_SENT, sent), (TCP_RECEIVED, received), (TCP_OPENED, opened),
                                (TCP_CLOSED, closed)):
                series = self._counters[name]
                if value or key not in series:
                    series[key] = series.get(key, 0.0) + value

    def snapshot(self) -> tuple[dict[str, dict[LabelValues, float]], dict[str, dict[LabelValues, _Histogram]]]:
        with self._lock:
            counters = {name: dict(series) for name, series in self._counters.items()}
            histograms = {
                name: {k: _Histogram(h.buckets, list(h.counts), h.total) for k, h in series.items()}
                for name, series in self._histograms.items()
            }
        return counters, histograms

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _Collector(Collector):
    def __init__(self, metrics: IstioMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        counters, histograms = self.metrics.snapshot()
        for name, label_names in _COUNTERS:
            family = CounterMetricFamily(name, _HELP[name], labels=label_names)
            for key, value in sorted(counters[name].items()):
                family.add_metric(list(key), value)
            yield family
        for name, _buckets in _HISTOGRAMS:
            family = HistogramMetricFamily(name, _HELP[name], labels=HTTP_LABELS)
            for key, hist in sorted(histograms[name].items()):
                family.add_metric(list(key), hist.cumulative(), hist.total)
            yield family
