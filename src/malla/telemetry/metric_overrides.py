"""Telemetry ``metrics`` for malla's Prometheus metrics: merged per proxy by Pilot, applied by the agent.

Theory of operation
-------------------
Pilot (pure): ``merge`` takes the specs of the Telemetry resources that
apply to a proxy (``policy.applicable_telemetries``: mesh, namespace,
workload, in that order) and merges their ``metrics`` entries as Istio's
``mergeMetrics`` does:

* an entry without ``providers`` inherits the previous entry's (the first
  inherits Istio's default, ``prometheus``); the last entry that names
  providers decides which are in scope, so a namespace naming only another
  provider turns malla's Prometheus metrics off, as it turns Istio's off.
  Only entries for ``prometheus`` (compared without case) shape them;
* overrides apply in order, later ones on top of earlier ones, per mode
  (``CLIENT``: what the proxy reports as the source, gateways included;
  ``SERVER``: as the destination) and per metric: ``disabled`` replaces,
  ``tagOverrides`` replace per tag name (REMOVE drops the label, UPSERT sets
  it to an expression's value, see ``metric_expressions``);
* an override disabling every metric (no ``metric``, or ``ALL_METRICS``)
  turns the mode off until a later override for that mode turns it back on;
* ``reportingInterval``: the last one set wins; it is the report interval of
  open TCP connections.

UPSERT values malla cannot compute are left out here; validation warns
about them by field path, and about ``GRPC_*`` metrics, which malla does
not produce. A ``customMetric`` matches a standard metric by Istio's
stats name (``requests_total``); other custom metrics do not exist in
malla, so overrides of them change nothing.

The result travels with each access logger as one literal custom tag
(``TAG_METRICS``: compact JSON of ``{metric: {"disabled": true, "tags":
{name: expression or null}}}``), the client side's on outbound and gateway
loggers, the server side's on a sidecar's inbound ones, so one proxy's
listeners may differ. The agent (``compiled``) turns the tag into a
``SideOverrides`` once per distinct text and ``shape``s each metric's labels.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from malla.api.telemetry.telemetry import Metrics, MetricSelector, MetricsOverrides, Telemetry
from malla.telemetry import metric_expressions
from malla.telemetry.metric_expressions import Entry, Expression

log = logging.getLogger(__name__)

PROVIDER = "prometheus"  # Istio's default metrics provider: the one malla's metrics stand for
TAG_METRICS = "malla.metrics"
CLIENT, SERVER = "CLIENT", "SERVER"
# Istio's metric enum -> the series malla exports (metrics.py); GRPC_* have none.
METRICS = {
    "REQUEST_COUNT": "istio_requests_total",
    "REQUEST_DURATION": "istio_request_duration_milliseconds",
    "REQUEST_SIZE": "istio_request_bytes",
    "RESPONSE_SIZE": "istio_response_bytes",
    "TCP_OPENED_CONNECTIONS": "istio_tcp_connections_opened_total",
    "TCP_CLOSED_CONNECTIONS": "istio_tcp_connections_closed_total",
    "TCP_SENT_BYTES": "istio_tcp_sent_bytes_total",
    "TCP_RECEIVED_BYTES": "istio_tcp_received_bytes_total",
}
_HTTP_SERIES = frozenset(v for k, v in METRICS.items() if not k.startswith("TCP_"))
_TCP_SERIES = frozenset(v for k, v in METRICS.items() if k.startswith("TCP_"))
UNPRODUCED_METRICS = frozenset({"GRPC_REQUEST_MESSAGES", "GRPC_RESPONSE_MESSAGES"})
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def custom_metric(name: str) -> str | None:
    """The malla series a ``customMetric`` names (Istio's stats names: ``requests_total``), if any."""
    full = name if name.startswith("istio_") else f"istio_{name}"
    return full if full in METRICS.values() else None


def usable_tag_name(name: str) -> bool:
    """A Prometheus label name that is not reserved (``__*``, and ``le`` which histograms use)."""
    return bool(_LABEL_NAME.fullmatch(name)) and not name.startswith("__") and name != "le"


@dataclass(frozen=True)
class MetricOverride:
    disabled: bool = False
    tags: tuple[tuple[str, str | None], ...] = ()  # (label, expression text); None: remove; sorted


@dataclass(frozen=True)
class SideOverrides:
    """What one mode (CLIENT or SERVER) does to each metric; metrics not named are left as they are."""

    metrics: tuple[tuple[str, MetricOverride], ...] = ()

    def encode(self) -> str:
        """The custom tag's text ("" when nothing is overridden)."""
        if not self.metrics:
            return ""
        body: dict[str, Any] = {}
        for name, override in self.metrics:
            entry: dict[str, Any] = {"disabled": True} if override.disabled else {}
            if override.tags and not override.disabled:
                entry["tags"] = dict(override.tags)
            body[name] = entry
        return json.dumps(body, sort_keys=True, separators=(",", ":"))

    def records_nothing(self, *, tcp: bool) -> bool:
        """Every metric an access-log entry of this kind feeds is disabled: the proxy need not send it.

        HTTP entries feed the request metrics, TCP entries the connection ones;
        leaving the logger out saves Envoy and the agent the per-request work.
        """
        wanted = _TCP_SERIES if tcp else _HTTP_SERIES
        return wanted <= {name for name, override in self.metrics if override.disabled}

    @property
    def request_headers(self) -> tuple[str, ...]:
        """Request headers the UPSERT values read: the access logger must send them."""
        found = set()
        for _, override in self.metrics:
            for _, value in override.tags:
                header = metric_expressions.parse(value).header if value is not None else None
                if header:
                    found.add(header)
        return tuple(sorted(found))


@dataclass(frozen=True)
class MetricsPolicy:
    client: SideOverrides = field(default_factory=SideOverrides)
    server: SideOverrides = field(default_factory=SideOverrides)
    reporting_interval_s: float | None = None

    def side(self, *, inbound: bool) -> SideOverrides:
        return self.server if inbound else self.client


def merge(specs: Sequence[Telemetry]) -> MetricsPolicy:
    """Istio's merge of the ``metrics`` of ``specs``, least specific first (see the module docstring)."""
    entries = [m for spec in specs for m in spec.metrics]
    state = _MergeState()
    in_scope = [PROVIDER]
    for metrics in entries:
        in_scope = _provider_names(metrics) or in_scope
    if PROVIDER not in in_scope:
        return state.everything_off()
    parent = [PROVIDER]
    for metrics in entries:
        parent = _provider_names(metrics) or parent
        if PROVIDER not in parent:
            continue
        if metrics.reporting_interval is not None and metrics.reporting_interval.nanos > 0:
            state.reporting_interval_s = metrics.reporting_interval.nanos / 1e9
        for override in metrics.overrides:
            state.apply(override)
    return state.result()


def _provider_names(metrics: Metrics) -> list[str]:
    return [(p.name or "").lower() for p in metrics.providers]


def _modes(selector: MetricSelector | None) -> tuple[str, ...]:
    mode = selector.mode if selector is not None else None
    return (mode,) if mode in (CLIENT, SERVER) else (CLIENT, SERVER)


def _is_all(selector: MetricSelector | None) -> bool:
    if selector is None:
        return True
    return selector.custom_metric is None and selector.metric in (None, "ALL_METRICS")


def _matched(selector: MetricSelector | None) -> list[str]:
    if selector is not None and selector.custom_metric is not None:
        found = custom_metric(selector.custom_metric)
        return [found] if found else []
    if _is_all(selector):
        return list(METRICS.values())
    assert selector is not None
    return [METRICS[selector.metric]] if selector.metric in METRICS else []


class _MergeState:
    def __init__(self) -> None:
        self.all_off = {CLIENT: False, SERVER: False}
        self.per_metric: dict[str, dict[str, tuple[bool | None, dict[str, str | None]]]] = {CLIENT: {}, SERVER: {}}
        self.reporting_interval_s: float | None = None

    def apply(self, override: MetricsOverrides) -> None:
        if _is_all(override.match) and override.disabled:
            for mode in _modes(override.match):
                self.all_off[mode] = True
            return
        tags = dict(_tag_operations(override))
        for mode in _modes(override.match):
            self.all_off[mode] = False  # a later, narrower override turns the mode back on, as in Istio
            for metric in _matched(override.match):
                disabled, before = self.per_metric[mode].get(metric, (None, {}))
                if override.disabled is not None:
                    disabled = override.disabled
                self.per_metric[mode][metric] = (disabled, before | tags)

    def everything_off(self) -> MetricsPolicy:
        self.all_off = {CLIENT: True, SERVER: True}
        return self.result()

    def result(self) -> MetricsPolicy:
        return MetricsPolicy(client=self._side(CLIENT), server=self._side(SERVER),
                             reporting_interval_s=self.reporting_interval_s)

    def _side(self, mode: str) -> SideOverrides:
        if self.all_off[mode]:
            return SideOverrides(tuple((name, MetricOverride(disabled=True)) for name in sorted(METRICS.values())))
        out = []
        for metric, (disabled, tags) in sorted(self.per_metric[mode].items()):
            if disabled or tags:
                out.append((metric, MetricOverride(bool(disabled), tuple(sorted(tags.items())))))
        return SideOverrides(tuple(out))


def _tag_operations(override: MetricsOverrides) -> Iterable[tuple[str, str | None]]:
    """(label, expression text or None to remove) for the tags malla can honour; the rest is warned of."""
    for name, tag in override.tag_overrides.items():
        if (tag.operation or "UPSERT") == "REMOVE":
            yield name, None
        elif usable_tag_name(name) and tag.value and metric_expressions.problem(tag.value) is None:
            yield name, tag.value


# --- the agent's side ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Compiled:
    disabled: bool
    operations: tuple[tuple[str, Expression | None], ...]


class Shaper:
    """One access logger's overrides, ready to apply: ``shape(metric, labels, entry)``."""

    def __init__(self, metrics: Mapping[str, _Compiled]) -> None:
        self._metrics = metrics

    def shape(self, metric: str, labels: Mapping[str, str], entry: Entry) -> Mapping[str, str] | None:
        """The labels ``metric`` is recorded with for this entry; None when the metric is disabled."""
        compiled = self._metrics.get(metric)
        if compiled is None:
            return labels
        if compiled.disabled:
            return None
        out = dict(labels)
        for name, expression in compiled.operations:
            if expression is None:
                out.pop(name, None)
            else:
                out[name] = expression.evaluate(entry, labels)
        return out


NO_OVERRIDES = Shaper({})


@functools.lru_cache(maxsize=256)
def compiled(text: str) -> Shaper:
    """The ``Shaper`` for one ``TAG_METRICS`` text ("" or unreadable: no overrides)."""
    if not text:
        return NO_OVERRIDES
    try:
        body = json.loads(text)
        metrics = {str(name): _compile(spec) for name, spec in body.items()}
    except (ValueError, AttributeError, TypeError) as exc:
        log.warning("ignoring metric overrides the agent cannot read (%s): %r", exc, text[:200])
        return NO_OVERRIDES
    return Shaper(metrics)


def _compile(spec: Mapping[str, Any]) -> _Compiled:
    operations = []
    for name, value in sorted(dict(spec.get("tags") or {}).items()):
        operations.append((str(name), None if value is None else metric_expressions.parse(str(value))))
    return _Compiled(bool(spec.get("disabled")), tuple(operations))


# --- what validation tells the user -------------------------------------------------------


def override_warnings(override: MetricsOverrides) -> list[tuple[str, str]]:
    """(field path below the override, message) for each part malla cannot honour."""
    out = []
    match = override.match
    if match is not None and match.metric in UNPRODUCED_METRICS:
        out.append(("match.metric", f"malla produces no {match.metric} metric (Istio's gRPC message counts), so "
                                    f"this override changes nothing; match one of {', '.join(METRICS)}"))
    for name, tag in override.tag_overrides.items():
        if (tag.operation or "UPSERT") != "UPSERT" or not tag.value:
            continue
        if _LABEL_NAME.fullmatch(name) and not usable_tag_name(name):  # validation warns of other bad names
            out.append((f"tagOverrides[{name}]", f"malla leaves tag {name!r} out: a new label may not be 'le' or "
                                                 "start with '__' (Prometheus reserves them)"))
        problem = metric_expressions.problem(tag.value)
        if problem:
            out.append((f"tagOverrides[{name}].value", f"malla leaves tag {name!r} out: {problem}"))
    return out
