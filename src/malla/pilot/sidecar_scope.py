"""What one proxy sees: Istio's SidecarScope.

From the snapshot and the proxy: the services it may call (exportTo, then a
Sidecar resource's ``egress[].hosts`` such as ``./*`` or
``istio-system/*.example.com``), the VirtualServices bound to the mesh for
those hosts, and its outbound traffic policy (ALLOW_ANY or REGISTRY_ONLY).
With no Sidecar resource a proxy sees every service exported to its
namespace, as in Istio.
"""

from __future__ import annotations

from dataclasses import dataclass

from malla.config.model import Config
from malla.pilot.destination_rules import exported_to, host_matches, resolve_host
from malla.pilot.services import Service
from malla.pilot.snapshot import MeshSnapshot, Proxy

MESH_GATEWAY = "mesh"


@dataclass(frozen=True)
class SidecarScope:
    services: tuple[Service, ...]
    virtual_services: tuple[Config, ...]
    outbound_policy: str  # ALLOW_ANY | REGISTRY_ONLY
    sidecar: Config | None = None

    def service(self, hostname: str) -> Service | None:
        return next((s for s in self.services if s.hostname == hostname), None)


def build_scope(proxy: Proxy, snapshot: MeshSnapshot) -> SidecarScope:
    mesh = snapshot.mesh
    sidecar = snapshot.sidecar_scope(proxy) if not proxy.is_router else None
    egress = _egress_hosts(sidecar)
    services = tuple(
        s
        for s in snapshot.registry.visible_services(proxy.namespace)
        if egress is None or any(_selects(e, s.namespace, s.hostname, sidecar) for e in egress)
    )
    vss = tuple(
        vs
        for vs in snapshot.configs_of("VirtualService")
        if exported_to(vs, proxy.namespace, default=mesh.default_virtual_service_export_to)
        and _bound_to_mesh(vs)
        and (egress is None or _vs_selected(vs, egress, sidecar, domain=mesh.domain))
    )
    policy = mesh.outbound_traffic_policy
    if sidecar is not None and sidecar.spec.outbound_traffic_policy is not None:
        policy = sidecar.spec.outbound_traffic_policy.mode or policy
    return SidecarScope(services=services, virtual_services=vss, outbound_policy=policy, sidecar=sidecar)


def _bound_to_mesh(vs: Config) -> bool:
    return not vs.spec.gateways or MESH_GATEWAY in vs.spec.gateways


def _egress_hosts(sidecar: Config | None) -> list[str] | None:
    if sidecar is None or not sidecar.spec.egress:
        return None
    return [h for listener in sidecar.spec.egress for h in listener.hosts]


def _selects(entry: str, namespace: str, hostname: str, sidecar: Config | None) -> bool:
    ns, _, host = entry.partition("/")
    return _namespace_selected(ns, namespace, sidecar) and host_matches(host, hostname)


def _namespace_selected(ns: str, namespace: str, sidecar: Config | None) -> bool:
    """The ``ns`` of ``ns/host``: a namespace, ``*`` any, ``.`` the Sidecar's own, ``~`` none."""
    if ns == "." and sidecar is not None:
        ns = sidecar.namespace
    return ns != "~" and ns in ("*", namespace)


def _vs_selected(vs: Config, egress: list[str], sidecar: Config | None, *, domain: str) -> bool:
    """A VirtualService is in scope when one of its hosts overlaps an egress host of its namespace."""
    hosts = [resolve_host(h, namespace=vs.namespace, domain=domain) for h in vs.spec.hosts]
    for entry in egress:
        ns, _, pattern = entry.partition("/")
        if _namespace_selected(ns, vs.namespace, sidecar) and any(
            host_matches(pattern, h) or host_matches(h, pattern) for h in hosts
        ):
            return True
    return False
