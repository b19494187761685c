"""Health from request errors, with Kiali's default tolerances and colours.

Kiali (``health_config.rate`` defaults, https://kiali.io/docs/configuration/health/):
HTTP 5xx are degraded above 0 % and a failure from 10 %; HTTP 4xx are
degraded from 10 % and a failure from 20 % (some client errors are normal);
gRPC statuses 1-16 are degraded above 0 % and a failure from 10 %. Each
ratio is taken over the requests of its own protocol, and the worst status
wins. No requests means no health information, not healthy.
"""

from __future__ import annotations

from dataclasses import dataclass

HEALTHY = "Healthy"
DEGRADED = "Degraded"
FAILURE = "Failure"
NO_DATA = "NA"

# PatternFly's status colours, the ones Kiali paints with.
COLOURS = {HEALTHY: "#3e8635", DEGRADED: "#f0ab00", FAILURE: "#c9190b", NO_DATA: "#8a8d90"}
_RANK = {NO_DATA: 0, HEALTHY: 1, DEGRADED: 2, FAILURE: 3}


@dataclass(frozen=True)
class Tolerance:
    protocol: str
    errors: str  # which counter of ``traffic.Traffic`` holds the errors: "http_5xx", "http_4xx", "grpc_err"
    degraded: float  # percent
    failure: float  # percent


TOLERANCES = (
    Tolerance("http", "http_5xx", degraded=0.0, failure=10.0),
    Tolerance("http", "http_4xx", degraded=10.0, failure=20.0),
    Tolerance("grpc", "grpc_err", degraded=0.0, failure=10.0),
)


def threshold_status(percent: float, tolerance: Tolerance) -> str:
    """Kiali's ascending check: nothing below zero errors, then failure before degraded."""
    if percent > 0 and percent >= tolerance.failure:
        return FAILURE
    if percent > 0 and percent >= tolerance.degraded:
        return DEGRADED
    return HEALTHY


def worst(*statuses: str) -> str:
    return max(statuses, key=lambda s: _RANK[s], default=NO_DATA)


def request_health(*, totals: dict[str, float], errors: dict[str, float]) -> str:
    """``totals`` per protocol (requests/s), ``errors`` per tolerance counter (requests/s)."""
    found = []
    for tolerance in TOLERANCES:
        total = totals.get(tolerance.protocol, 0.0)
        if total > 0:
            found.append(threshold_status(100.0 * errors.get(tolerance.errors, 0.0) / total, tolerance))
    return worst(*found) if found else NO_DATA
