"""Istio's standard metrics, read from a proxy's Prometheus text into compact counters.

In: the text a workload's agent serves on ``:15020/stats/prometheus``
(``istio_requests_total``, ``istio_request_duration_milliseconds``,
``istio_tcp_*``, with Istio's labels). Out: one flat ``{field: value}`` of
cumulative counters per ``SeriesKey`` (the labels the console groups by), so
deltas, sums and rates are plain dictionary arithmetic. Fields:
``req:<response code>``, ``grpc_err``, ``dur_sum``, ``dur_count``,
``le:<bucket bound>``, ``tcp_sent``, ``tcp_received``, ``tcp_opened``.
Labels the console does not group by (``response_flags``, principals, ...)
are summed away.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from prometheus_client.parser import text_string_to_metric_families

Counters = dict[str, float]

REQUESTS = "istio_requests_total"
DURATION = "istio_request_duration_milliseconds"
TCP_SENT = "istio_tcp_sent_bytes_total"
TCP_RECEIVED = "istio_tcp_received_bytes_total"
TCP_OPENED = "istio_tcp_connections_opened_total"

UNKNOWN = "unknown"


@dataclass(frozen=True, order=True)
class SeriesKey:
    """One flow as one proxy reported it: who called which service on which workload, and how."""

    reporter: str  # "source" (the caller's sidecar) or "destination" (the callee's)
    source_workload: str
    source_namespace: str
    source_version: str  # "" when unknown: the version label of the caller
    destination_service: str  # the host, "reviews.default.svc.cluster.local"
    destination_service_name: str
    destination_service_namespace: str
    destination_workload: str
    destination_namespace: str
    destination_version: str
    protocol: str  # request_protocol: http, grpc or tcp
    security: str  # connection_security_policy: mutual_tls, none or unknown

    @property
    def flow(self) -> tuple[str, ...]:
        """The flow without who reported it or how it was secured (see ``traffic.effective``)."""
        return (self.source_workload, self.source_namespace, self.source_version, self.destination_service,
                self.destination_workload, self.destination_namespace, self.destination_version)

    @property
    def destination_known(self) -> bool:
        return self.destination_workload not in ("", UNKNOWN)


def _label(labels: dict[str, str], name: str) -> str:
    return labels.get(name) or UNKNOWN


def _version(labels: dict[str, str], name: str) -> str:
    value = labels.get(name) or ""
    return "" if value == UNKNOWN else value


def series_key(labels: dict[str, str]) -> SeriesKey:
    return SeriesKey(
        reporter=_label(labels, "reporter"),
        source_workload=_label(labels, "source_workload"),
        source_namespace=_label(labels, "source_workload_namespace"),
        source_version=_version(labels, "source_version"),
        destination_service=_label(labels, "destination_service"),
        destination_service_name=_label(labels, "destination_service_name"),
        destination_service_namespace=_label(labels, "destination_service_namespace"),
        destination_workload=_label(labels, "destination_workload"),
        destination_namespace=_label(labels, "destination_workload_namespace"),
        destination_version=_version(labels, "destination_version"),
        protocol=(labels.get("request_protocol") or "http").lower(),
        security=_label(labels, "connection_security_policy"),
    )


def _field(name: str, labels: dict[str, str]) -> str | None:
    if name == REQUESTS:
        return f"req:{labels.get('response_code') or '0'}"
    if name == DURATION + "_bucket":
        return f"le:{labels.get('le', '+Inf')}"
    return {
        DURATION + "_sum": "dur_sum",
        DURATION + "_count": "dur_count",
        TCP_SENT: "tcp_sent",
        TCP_RECEIVED: "tcp_received",
        TCP_OPENED: "tcp_opened",
    }.get(name)


def _is_grpc_error(name: str, labels: dict[str, str]) -> bool:
    # Kiali counts gRPC status 1-16 as errors; HTTP 200 carries them for gRPC calls.
    status = labels.get("grpc_response_status") or ""
    return name == REQUESTS and labels.get("request_protocol") == "grpc" and status not in ("", "0")


_FAMILIES = (REQUESTS, DURATION, TCP_SENT, TCP_RECEIVED, TCP_OPENED)
_PREFIXES = tuple(f"{name}{{" for name in (REQUESTS, TCP_SENT, TCP_RECEIVED, TCP_OPENED)) + tuple(
    f"{DURATION}_{part}{{" for part in ("bucket", "sum", "count"))
_TYPES = tuple(f"# TYPE {name} " for name in _FAMILIES)
_GROUPED = {"reporter", "source_workload", "source_workload_namespace", "source_version", "destination_service",
            "destination_service_name", "destination_service_namespace", "destination_workload",
            "destination_workload_namespace", "destination_version", "request_protocol", "response_code",
            "grpc_response_status", "connection_security_policy", "le"}
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?')


def _drop_unused_labels(line: str) -> str:
    head, brace, rest = line.partition("{")
    labels, close, value = rest.rpartition("}")
    kept = ",".join(m.group(0).rstrip(",") for m in _LABEL.finditer(labels) if m.group(1) in _GROUPED)
    return f"{head}{brace}{kept}{close}{value}"


def _istio_lines(text: str) -> str:
    """Only the families and labels the console reads.

    A sidecar's text holds thousands of Envoy stats, and each Istio series some twenty labels
    (principals, canonical names, ...); prometheus_client's parser reads character by character,
    so the rest is cut before it runs (an order of magnitude less work per scrape).
    """
    keep = [
        _drop_unused_labels(line) if line.startswith(_PREFIXES) else line
        for line in text.splitlines()
        if line.startswith(_PREFIXES) or line.startswith(_TYPES)
    ]
    return "\n".join(keep) + "\n"


def parse_istio_metrics(text: str) -> dict[SeriesKey, Counters]:
    """Cumulative counters per series key; raises ``ValueError`` on text that is not Prometheus' format."""
    out: dict[SeriesKey, Counters] = {}
    for family in text_string_to_metric_families(_istio_lines(text)):
        for sample in family.samples:
            field = _field(sample.name, sample.labels)
            if field is None:
                continue
            counters = out.setdefault(series_key(sample.labels), {})
            counters[field] = counters.get(field, 0.0) + float(sample.value)
            if _is_grpc_error(sample.name, sample.labels):
                counters["grpc_err"] = counters.get("grpc_err", 0.0) + float(sample.value)
    return out

