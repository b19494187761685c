"""Traffic figures from counter rates: requests/s, error %, latency percentiles, mTLS share.

Every request is reported twice, by the caller's sidecar (``reporter=source``)
and by the callee's (``reporter=destination``). ``effective`` keeps each flow
once, as Kiali does: the destination's report where there is one (it knows
the mTLS policy and the served workload), the source's otherwise (calls that
never reached a sidecar: no healthy upstream, services outside the mesh).
Percentiles interpolate inside the histogram bucket the way Prometheus'
``histogram_quantile`` does.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from malla.console.health import request_health
from malla.console.istio_metrics import Counters, SeriesKey
from malla.console.timeseries import Rates


def effective(rates: Rates) -> Rates:
    reported_by_destination = {key.flow for key in rates if key.reporter == "destination"}
    return {
        key: counters for key, counters in rates.items()
        if key.reporter == "destination" or key.flow not in reported_by_destination
    }


def histogram_quantile(q: float, buckets: dict[float, float]) -> float | None:
    """The q-quantile of cumulative bucket counts (upper bound -> count); None without observations."""
    if not buckets:
        return None
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if total <= 0 or not math.isinf(bounds[-1]):
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower  # Prometheus answers the last finite bound when the rank is in +Inf
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def _bound(field_name: str) -> float:
    return float(field_name[3:].replace("Inf", "inf"))


@dataclass
class Traffic:
    """What flowed through a set of series (all figures per second over the window or step)."""

    requests: float = 0.0
    codes: dict[str, float] = field(default_factory=dict)  # "2xx" .. "5xx", "other" -> requests/s
    totals: dict[str, float] = field(default_factory=dict)  # protocol -> requests/s
    errors: dict[str, float] = field(default_factory=dict)  # "http_4xx", "http_5xx", "grpc_err" -> requests/s
    buckets: dict[float, float] = field(default_factory=dict)
    tcp_bytes: float = 0.0
    mtls_requests: float = 0.0
    secured_known: float = 0.0  # requests whose connection security was reported (destination side)
    protocols: set[str] = field(default_factory=set)

    def add(self, key: SeriesKey, counters: Counters) -> None:
        self.protocols.add(key.protocol)
        requests = 0.0
        for name, value in counters.items():
            if name.startswith("req:"):
                requests += value
                self._add_code(key.protocol, name[4:], value)
            elif name.startswith("le:"):
                bound = _bound(name)
                self.buckets[bound] = self.buckets.get(bound, 0.0) + value
        self.requests += requests
        self.totals[key.protocol] = self.totals.get(key.protocol, 0.0) + requests
        self.errors["grpc_err"] = self.errors.get("grpc_err", 0.0) + counters.get("grpc_err", 0.0)
        self.tcp_bytes += counters.get("tcp_sent", 0.0) + counters.get("tcp_received", 0.0)
        weight = requests or counters.get("tcp_opened", 0.0) or counters.get("tcp_sent", 0.0)
        if key.security != "unknown":
            self.secured_known += weight
            if key.security == "mutual_tls":
                self.mtls_requests += weight

    def _add_code(self, protocol: str, code: str, value: float) -> None:
        cls = f"{code[0]}xx" if len(code) == 3 and code[0] in "12345" else "other"
        self.codes[cls] = self.codes.get(cls, 0.0) + value
        if protocol == "http" and cls in ("4xx", "5xx"):
            self.errors[f"http_{cls}"] = self.errors.get(f"http_{cls}", 0.0) + value

    @property
    def error_requests(self) -> float:
        return self.codes.get("4xx", 0.0) + self.codes.get("5xx", 0.0) + self.errors.get("grpc_err", 0.0)

    @property
    def error_percent(self) -> float | None:
        return 100.0 * min(self.error_requests, self.requests) / self.requests if self.requests > 0 else None

    @property
    def mtls_percent(self) -> float | None:
        return 100.0 * self.mtls_requests / self.secured_known if self.secured_known > 0 else None

    @property
    def health(self) -> str:
        return request_health(totals=self.totals, errors=self.errors)

    def quantile_ms(self, q: float) -> float | None:
        return histogram_quantile(q, self.buckets)

    def to_json(self) -> dict[str, Any]:
        return {
            "rps": _round(self.requests),
            "errorPercent": _round(self.error_percent),
            "p50Ms": _round(self.quantile_ms(0.5)),
            "p95Ms": _round(self.quantile_ms(0.95)),
            "p99Ms": _round(self.quantile_ms(0.99)),
            "responses": {k: _round(v) for k, v in sorted(self.codes.items())},
            "tcpBytesPerSecond": _round(self.tcp_bytes),
            "mtlsPercent": _round(self.mtls_percent),
            "protocols": sorted(self.protocols),
            "health": self.health,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def summarize(items: Iterable[tuple[SeriesKey, Counters]]) -> Traffic:
    traffic = Traffic()
    for key, counters in items:
        traffic.add(key, counters)
    return traffic

