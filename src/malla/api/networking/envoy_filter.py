"""EnvoyFilter (networking.istio.io v1alpha3) and its messages.

Field for field the ``istio.networking.v1alpha3.EnvoyFilter`` proto: which
workloads (``workloadSelector`` or ``targetRefs``), the ordering
``priority``, and config patches, each saying what to patch (``applyTo``),
where (``match``: context, proxy, and one of listener, route configuration,
cluster or waypoint) and how (``patch``: operation, value, filter class).

``patch.value`` stays a free-form Struct: it is Envoy's own JSON for the
patched object, checked against Envoy's protos by the validator.

Semantic rules live in ``malla.config.validation.envoy_filter``.
"""

from __future__ import annotations

from pydantic import Field

from malla.api.base import Int32, IstioModel, Str, Struct, UInt32, proto_enum
from malla.api.networking.destination_rule import WorkloadSelector
from malla.api.security.common import PolicyTargetReference

ApplyTo = proto_enum(
    "INVALID",
    "LISTENER",
    "FILTER_CHAIN",
    "NETWORK_FILTER",
    "HTTP_FILTER",
    "ROUTE_CONFIGURATION",
    "VIRTUAL_HOST",
    "HTTP_ROUTE",
    "CLUSTER",
    "EXTENSION_CONFIG",
    "BOOTSTRAP",
    "LISTENER_FILTER",
)
PatchContext = proto_enum("ANY", "SIDECAR_INBOUND", "SIDECAR_OUTBOUND", "GATEWAY", "WAYPOINT")
Operation = proto_enum(
    "INVALID",
    "MERGE",
    "ADD",
    "REMOVE",
    "INSERT_BEFORE",
    "INSERT_AFTER",
    "INSERT_FIRST",
    "REPLACE",
    "MERGE_AND_REPLACE_LIST",
)
FilterClass = proto_enum("UNSPECIFIED", "AUTHN", "AUTHZ", "STATS")
RouteAction = proto_enum("ANY", "ROUTE", "REDIRECT", "DIRECT_RESPONSE")


class ProxyMatch(IstioModel):
    proxy_version: Str | None = None  # RE2 regex on the proxy's ISTIO_VERSION
    metadata: dict[str, Str] = Field(default_factory=dict)


class ClusterMatch(IstioModel):
    port_number: UInt32 | None = None
    service: Str | None = None
    subset: Str | None = None
    name: Str | None = None


class RouteMatch(IstioModel):
    name: Str | None = None
    action: RouteAction | None = None


class VirtualHostMatch(IstioModel):
    name: Str | None = None
    route: RouteMatch | None = None
    domain_name: Str | None = None


class RouteConfigurationMatch(IstioModel):
    port_number: UInt32 | None = None
    port_name: Str | None = None
    gateway: Str | None = None
    vhost: VirtualHostMatch | None = None
    name: Str | None = None


class SubFilterMatch(IstioModel):
    name: Str | None = None


class FilterMatch(IstioModel):
    name: Str | None = None
    sub_filter: SubFilterMatch | None = None


class FilterChainMatch(IstioModel):
    name: Str | None = None
    sni: Str | None = None
    transport_protocol: Str | None = None
    application_protocols: Str | None = None
    filter: FilterMatch | None = None
    destination_port: UInt32 | None = None


class ListenerMatch(IstioModel):
    port_number: UInt32 | None = None
    port_name: Str | None = None  # not implemented by Istio; parsed for compatibility
    filter_chain: FilterChainMatch | None = None
    listener_filter: Str | None = None
    name: Str | None = None


class WaypointRouteMatch(IstioModel):
    name: Str | None = None


class WaypointMatch(IstioModel):
    """Only with context WAYPOINT: a filter, a service port and a route of a waypoint proxy."""

    filter: FilterMatch | None = None
    port_number: UInt32 | None = None
    route: WaypointRouteMatch | None = None


class EnvoyConfigObjectMatch(IstioModel):
    context: PatchContext | None = None
    proxy: ProxyMatch | None = None
    # oneof object_types
    listener: ListenerMatch | None = None
    route_configuration: RouteConfigurationMatch | None = None
    cluster: ClusterMatch | None = None
    waypoint: WaypointMatch | None = None


class Patch(IstioModel):
    operation: Operation | None = None
    value: Struct | None = None
    filter_class: FilterClass | None = None


class EnvoyConfigObjectPatch(IstioModel):
    apply_to: ApplyTo | None = None
    match: EnvoyConfigObjectMatch | None = None
    patch: Patch | None = None


class EnvoyFilter(IstioModel):
    workload_selector: WorkloadSelector | None = None
    config_patches: list[EnvoyConfigObjectPatch] = Field(default_factory=list)
    priority: Int32 | None = None
    target_refs: list[PolicyTargetReference] = Field(default_factory=list)
