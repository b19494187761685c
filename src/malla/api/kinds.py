"""The Istio kinds malla understands: (group, kind) -> spec model and versions.

Spec models are imported lazily so that loading one kind does not import all
of them, and so that the table reads as the catalogue it is.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cached_property

from malla.api.base import IstioModel

NETWORKING = "networking.istio.io"
SECURITY = "security.istio.io"
TELEMETRY = "telemetry.istio.io"
EXTENSIONS = "extensions.istio.io"


@dataclass(frozen=True)
class KindInfo:
    group: str
    kind: str
    versions: tuple[str, ...]
    model_path: str  # "module:Class"
    plural: str
    namespaced: bool = True

    @cached_property
    def spec_model(self) -> type[IstioModel]:
        module, _, name = self.model_path.partition(":")
        return getattr(importlib.import_module(module), name)

    @property
    def api_versions(self) -> tuple[str, ...]:
        return tuple(f"{self.group}/{v}" for v in self.versions)


_NET3 = ("v1", "v1beta1", "v1alpha3")

KINDS: tuple[KindInfo, ...] = (
    KindInfo(NETWORKING, "VirtualService", _NET3, "malla.api.networking.virtual_service:VirtualService", "virtualservices"),
    KindInfo(NETWORKING, "DestinationRule", _NET3, "malla.api.networking.destination_rule:DestinationRule", "destinationrules"),
    KindInfo(NETWORKING, "Gateway", _NET3, "malla.api.networking.gateway:Gateway", "gateways"),
    KindInfo(NETWORKING, "ServiceEntry", _NET3, "malla.api.networking.service_entry:ServiceEntry", "serviceentries"),
    KindInfo(NETWORKING, "WorkloadEntry", _NET3, "malla.api.networking.workload_entry:WorkloadEntry", "workloadentries"),
    KindInfo(NETWORKING, "WorkloadGroup", _NET3, "malla.api.networking.workload_group:WorkloadGroup", "workloadgroups"),
    KindInfo(NETWORKING, "Sidecar", _NET3, "malla.api.networking.sidecar:Sidecar", "sidecars"),
    KindInfo(NETWORKING, "EnvoyFilter", ("v1alpha3",), "malla.api.networking.envoy_filter:EnvoyFilter", "envoyfilters"),
    KindInfo(NETWORKING, "ProxyConfig", ("v1beta1",), "malla.api.networking.proxy_config:ProxyConfig", "proxyconfigs"),
    KindInfo(SECURITY, "AuthorizationPolicy", ("v1", "v1beta1"), "malla.api.security.authorization_policy:AuthorizationPolicy", "authorizationpolicies"),
    KindInfo(SECURITY, "PeerAuthentication", ("v1", "v1beta1"), "malla.api.security.peer_authentication:PeerAuthentication", "peerauthentications"),
    KindInfo(SECURITY, "RequestAuthentication", ("v1", "v1beta1"), "malla.api.security.request_authentication:RequestAuthentication", "requestauthentications"),
    KindInfo(TELEMETRY, "Telemetry", ("v1", "v1alpha1"), "malla.api.telemetry.telemetry:Telemetry", "telemetries"),
    KindInfo(EXTENSIONS, "WasmPlugin", ("v1alpha1",), "malla.api.extensions.wasm_plugin:WasmPlugin", "wasmplugins"),
    KindInfo(EXTENSIONS, "TrafficExtension", ("v1alpha1",), "malla.api.extensions.traffic_extension:TrafficExtension", "trafficextensions"),
)

BY_GROUP_KIND: dict[tuple[str, str], KindInfo] = {(k.group, k.kind): k for k in KINDS}
BY_KIND: dict[str, KindInfo] = {k.kind: k for k in KINDS}


def lookup_kind(name: str) -> KindInfo | None:
    """Find a kind by its name, plural or lower-case name ('vs'-style short names too)."""
    lowered = name.lower()
    for k in KINDS:
        if lowered in (k.kind.lower(), k.plural, k.kind.lower() + "s"):
            return k
    return SHORT_NAMES.get(lowered)


SHORT_NAMES: dict[str, KindInfo] = {
    "vs": BY_KIND["VirtualService"],
    "dr": BY_KIND["DestinationRule"],
    "gw": BY_KIND["Gateway"],
    "se": BY_KIND["ServiceEntry"],
    "we": BY_KIND["WorkloadEntry"],
    "wg": BY_KIND["WorkloadGroup"],
    "ap": BY_KIND["AuthorizationPolicy"],
    "pa": BY_KIND["PeerAuthentication"],
    "ra": BY_KIND["RequestAuthentication"],
}
