"""Istio's standard metrics for one workload: counters and histograms by label values, in memory.

In: label dicts (``labels``) and observations from the access-log server's
thread. Out: Prometheus exposition text (``exposition()``) with Istio's
names and buckets (``istio_request_duration_milliseconds`` in ms with
Istio's default buckets, the byte histograms in powers of ten). A
``prometheus_client`` collector reads a consistent copy under a lock, so a
scrape never sees half an update; no ``_created`` series are emitted (Istio
has none).

Telemetry overrides (``metric_overrides``) may drop a metric or change its
labels per access logger, so the client and server sides of one proxy can
record one family with different label names. Prometheus reads a label
with an empty value as no label at all, so each family is exposed with the
union of its series' label names (Istio's in its order, then the added ones
by name), a series lacking one showing it as ``""``; series that become
equal that way are summed.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
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
SeriesKey = tuple[tuple[str, str], ...]  # (label, value) pairs, in the order they were recorded
# Given a metric's name and its standard labels: the labels to record it with, or None to drop it.
Shape = Callable[[str, Mapping[str, str]], Mapping[str, str] | None]


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

    def add(self, other: _Histogram) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.buckets) + 1)
        for i, count in enumerate(other.counts):
            self.counts[i] += count
        self.total += other.total

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
        self._counters: dict[str, dict[SeriesKey, float]] = {name: {} for name, _ in _COUNTERS}
        self._histograms: dict[str, dict[SeriesKey, _Histogram]] = {name: {} for name, _ in _HISTOGRAMS}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))

    def record_request(self, labels: Mapping[str, str], *, duration_ms: float, request_bytes: int,
                       response_bytes: int, shape: Shape | None = None) -> None:
        with self._lock:
            key = _key(REQUESTS_TOTAL, labels, shape)
            if key is not None:
                series = self._counters[REQUESTS_TOTAL]
                series[key] = series.get(key, 0.0) + 1
            for name, value in ((REQUEST_DURATION, duration_ms), (REQUEST_BYTES, request_bytes),
                                (RESPONSE_BYTES, response_bytes)):
                key = _key(name, labels, shape)
                if key is not None:
                    buckets = DURATION_BUCKETS if name == REQUEST_DURATION else BYTES_BUCKETS
                    self._histograms[name].setdefault(key, _Histogram(buckets)).observe(float(value))

    def record_tcp(self, labels: Mapping[str, str], *, sent: int = 0, received: int = 0, opened: int = 0,
                   closed: int = 0, shape: Shape | None = None) -> None:
        with self._lock:
            for name, value in ((TCP_SENT, sent), (TCP_RECEIVED, received), (TCP_OPENED, opened),
                                (TCP_CLOSED, closed)):
                key = _key(name, labels, shape)
                if key is None:
                    continue
                series = self._counters[name]
                if value or key not in series:
                    series[key] = series.get(key, 0.0) + value

    def snapshot(self) -> tuple[dict[str, dict[SeriesKey, float]], dict[str, dict[SeriesKey, _Histogram]]]:
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
        for name, standard in _COUNTERS:
            names = _union(standard, counters[name])
            family = CounterMetricFamily(name, _HELP[name], labels=names)
            summed: dict[LabelValues, float] = {}
            for key, value in counters[name].items():
                values = _values(names, key)
                summed[values] = summed.get(values, 0.0) + value
            for values, value in sorted(summed.items()):
                family.add_metric(list(values), value)
            yield family
        for name, buckets in _HISTOGRAMS:
            names = _union(HTTP_LABELS, histograms[name])
            family = HistogramMetricFamily(name, _HELP[name], labels=names)
            merged: dict[LabelValues, _Histogram] = {}
            for key, hist in histograms[name].items():
                merged.setdefault(_values(names, key), _Histogram(buckets)).add(hist)
            for values, hist in sorted(merged.items()):
                family.add_metric(list(values), hist.cumulative(), hist.total)
            yield family


def _key(metric: str, labels: Mapping[str, str], shape: Shape | None) -> SeriesKey | None:
    shaped = labels if shape is None else shape(metric, labels)
    return None if shaped is None else tuple(shaped.items())


def _union(standard: Sequence[str], keys: Iterable[SeriesKey]) -> list[str]:
    """Every label name some series of the family has: the standard ones in their order, then the rest sorted."""
    present = {name for key in keys for name, _ in key}
    return [name for name in standard if name in present] + sorted(present.difference(standard))


def _values(names: Sequence[str], key: SeriesKey) -> LabelValues:
    found = dict(key)
    return tuple(found.get(name, "") for name in names)
