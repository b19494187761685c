"""One service's or one workload's traffic: totals, charts over time and neighbours.

The JSON behind ``/api/v1/services/{ns}/{name}`` and
``/api/v1/workloads/{ns}/{name}``: the window's figures (requests/s, error %,
p50/p95/p99 latency, Kiali's health), the same figures per step for the
charts, and the inbound and outbound neighbours with their own figures.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from malla.console.graph import (
    destination_node,
    registered_service,
    service_id,
    service_of,
    source_node,
    workload_id,
)
from malla.console.health import worst
from malla.console.istio_metrics import SeriesKey
from malla.console.timeseries import MetricsStore, Rates
from malla.console.traffic import Traffic, effective, summarize

Select = Callable[[SeriesKey], bool]


def _pick(rates: Rates, select: Select) -> list[tuple[SeriesKey, dict[str, float]]]:
    return [(k, c) for k, c in sorted(effective(rates).items()) if select(k)]


def _series(store: MetricsStore, select: Select, *, now: float, span: float, step: float) -> list[dict[str, Any]]:
    points = []
    fields = ("rps", "errorPercent", "p50Ms", "p95Ms", "p99Ms")
    for t, rates in store.steps(now=now, span=span, step=step):
        data = summarize(_pick(rates, select)).to_json() if rates is not None else dict.fromkeys(fields)
        points.append({"t": round(t, 3), **{k: data[k] for k in fields}})
    return points


def _neighbours(items: list[tuple[SeriesKey, dict[str, float]]], node_of: Callable[[SeriesKey], str | None]) -> list[dict[str, Any]]:
    groups: dict[str, Traffic] = {}
    for key, counters in items:
        node = node_of(key)
        if node is not None:
            groups.setdefault(node, Traffic()).add(key, counters)
    return [{"node": node, **traffic.to_json()} for node, traffic in sorted(groups.items())]


def _service_node(key: SeriesKey) -> str:
    ns, name, _ = service_of(key)
    return service_id(ns, name)


def service_detail(store: MetricsStore, workloads: Sequence[Mapping[str, Any]], *, namespace: str, name: str,
                   now: float, window: float, span: float, step: float) -> dict[str, Any] | None:
    def select(key: SeriesKey) -> bool:
        return service_of(key)[:2] == (namespace, name)

    picked = _pick(store.rates(now=now, window=window), select)
    members = [w for w in workloads if w["namespace"] == namespace and registered_service(w) == name]
    if not picked and not members:
        return None
    inbound = summarize(picked)
    hosts = sorted({service_of(k)[2] for k, _ in picked})
    return {
        "kind": "service", "namespace": namespace, "name": name, "id": service_id(namespace, name), "hosts": hosts,
        "windowSeconds": window, "health": inbound.health, "inbound": inbound.to_json(),
        "series": {"inbound": _series(store, select, now=now, span=span, step=step)},
        "neighbours": {"inbound": _neighbours(picked, source_node), "outbound": _neighbours(picked, destination_node)},
        "workloads": sorted({workload_id(w["namespace"], w["name"], (w.get("labels") or {}).get("version") or "")
                             for w in members}),
    }


def workload_detail(store: MetricsStore, workloads: Sequence[Mapping[str, Any]], *, namespace: str, name: str,
                    now: float, window: float, span: float, step: float) -> dict[str, Any] | None:
    def incoming(key: SeriesKey) -> bool:
        return key.destination_known and (key.destination_namespace, key.destination_workload) == (namespace, name)

    def outgoing(key: SeriesKey) -> bool:
        return (key.source_namespace, key.source_workload) == (namespace, name)

    rates = store.rates(now=now, window=window)
    ins, outs = _pick(rates, incoming), _pick(rates, outgoing)
    instances = [dict(w) for w in workloads if w["namespace"] == namespace and w["name"] == name]
    if not ins and not outs and not instances:
        return None
    inbound, outbound = summarize(ins), summarize(outs)
    versions = sorted({k.destination_version for k, _ in ins} | {k.source_version for k, _ in outs}
                      | {str((w.get("labels") or {}).get("version") or "") for w in instances})
    return {
        "kind": "workload", "namespace": namespace, "name": name, "id": workload_id(namespace, name),
        "windowSeconds": window, "health": worst(inbound.health, outbound.health),
        "inbound": inbound.to_json(), "outbound": outbound.to_json(),
        "series": {
            "inbound": _series(store, incoming, now=now, span=span, step=step),
            "outbound": _series(store, outgoing, now=now, span=span, step=step),
        },
        "neighbours": {"inbound": _neighbours(ins, source_node), "outbound": _neighbours(outs, _service_node)},
        "instances": instances,
        "versions": {v: _version(v, ins, outs) for v in versions if v},
    }


def _version(version: str, ins: list[tuple[SeriesKey, dict[str, float]]],
             outs: list[tuple[SeriesKey, dict[str, float]]]) -> dict[str, Any]:
    inbound = summarize((k, c) for k, c in ins if k.destination_version == version)
    outbound = summarize((k, c) for k, c in outs if k.source_version == version)
    return {"health": worst(inbound.health, outbound.health), "inbound": inbound.to_json(), "outbound": outbound.to_json()}
