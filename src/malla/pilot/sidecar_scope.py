"""What one proxy sees: Istio's SidecarScope.

From the snapshot and the proxy: the services it may call (exportTo, then a
Sidecar resource's ``egress[].hosts`` such as ``./*`` or
``istio-system/*.example.com``), the VirtualServices bound to the mesh for
those hosts, and its outbound traffic policy (ALLOW_ANY or REGISTRY_ONLY).
With no Sidecar resource a proxy sees every service exported to its
namespace, as in Istio.

Each ``egress`` listener keeps its own services and VirtualServices
(``EgressScope``): one with a ``port`` owns that port, the one without is the
catch-all for every other port. HTTP routes for port P come from the
listener for P, else from the catch-all (Istio's ``GetEgressListenerForRDS``);
``services`` is the union, for clusters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from malla.config.model import Config
from malla.pilot.destination_rules import exported_to, host_matches, resolve_host
from malla.pilot.services import Service
from malla.pilot.snapshot import MeshSnapshot, Proxy

MESH_GATEWAY = "mesh"


@dataclass(frozen=True)
class EgressScope:
    """One egress listener: the port it owns (None: the catch-all), where it binds, what it exposes."""

    services: tuple[Service, ...]
    virtual_services: tuple[Config, ...]
    port: int | None = None
    protocol: str = ""  # the port's protocol as written ("" when not given)
    port_name: str = ""
    bind: str = ""  # "" when not given
    capture_mode: str = "DEFAULT"  # DEFAULT | IPTABLES | NONE
    _ids: frozenset[int] = field(default=frozenset(), init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Membership by identity: comparing services field by field is quadratic in big meshes.
        object.__setattr__(self, "_ids", frozenset(id(s) for s in (*self.services, *self.virtual_services)))

    def exposes(self, item: Service | Config) -> bool:
        """Whether this listener holds that very service or VirtualService."""
        return id(item) in self._ids


@dataclass(frozen=True)
class SidecarScope:
    services: tuple[Service, ...]
    virtual_services: tuple[Config, ...]
    outbound_policy: str  # ALLOW_ANY | REGISTRY_ONLY
    sidecar: Config | None = None
    egress: tuple[EgressScope, ...] = ()  # () when built by hand: one catch-all with everything

    def __post_init__(self) -> None:
        if not self.egress:
            catch_all = EgressScope(services=self.services, virtual_services=self.virtual_services)
            object.__setattr__(self, "egress", (catch_all,))

    def service(self, hostname: str) -> Service | None:
        return next((s for s in self.services if s.hostname == hostname), None)

    def for_port(self, port: int | None) -> EgressScope | None:
        """The egress listener whose routes serve ``port``: the one that owns it, else the catch-all."""
        if port is not None:
            owner = next((e for e in self.egress if e.port == port), None)
            if owner is not None:
                return owner
        return self.catch_all

    @property
    def catch_all(self) -> EgressScope | None:
        return next((e for e in self.egress if e.port is None), None)

    def only(self, egress: EgressScope) -> SidecarScope:
        """The scope as one egress listener sees it: its services and VirtualServices, on every port."""
        return SidecarScope(
            services=egress.services,
            virtual_services=egress.virtual_services,
            outbound_policy=self.outbound_policy,
            sidecar=self.sidecar,
        )

    @property
    def port_listeners(self) -> tuple[EgressScope, ...]:
        """The egress listeners with a port of their own, in the Sidecar's order."""
        return tuple(e for e in self.egress if e.port is not None)


def build_scope(proxy: Proxy, snapshot: MeshSnapshot) -> SidecarScope:
    mesh = snapshot.mesh
    sidecar = snapshot.sidecar_scope(proxy) if not proxy.is_router else None
    visible = snapshot.registry.visible_services(proxy.namespace)
    mesh_vss = tuple(
        vs
        for vs in snapshot.configs_of("VirtualService")
        if exported_to(vs, proxy.namespace, default=mesh.default_virtual_service_export_to) and _bound_to_mesh(vs)
    )
    if sidecar is None or not sidecar.spec.egress:
        egress = (EgressScope(services=visible, virtual_services=mesh_vss),)
    else:
        egress = tuple(_egress_scope(e, visible, mesh_vss, sidecar, domain=mesh.domain) for e in sidecar.spec.egress)
    services = tuple(s for s in visible if any(e.exposes(s) for e in egress))
    vss = tuple(vs for vs in mesh_vss if any(e.exposes(vs) for e in egress))
    policy = mesh.outbound_traffic_policy
    if sidecar is not None and sidecar.spec.outbound_traffic_policy is not None:
        policy = sidecar.spec.outbound_traffic_policy.mode or policy
    return SidecarScope(services=services, virtual_services=vss, outbound_policy=policy, sidecar=sidecar, egress=egress)


def _egress_scope(
    listener: Any, visible: tuple[Service, ...], vss: tuple[Config, ...], sidecar: Config, *, domain: str
) -> EgressScope:
    hosts = list(listener.hosts)
    port = listener.port
    return EgressScope(
        services=tuple(s for s in visible if any(_selects(h, s.namespace, s.hostname, sidecar) for h in hosts)),
        virtual_services=tuple(vs for vs in vss if _vs_selected(vs, hosts, sidecar, domain=domain)),
        port=port.number if port is not None and port.number is not None else None,
        protocol=(port.protocol or "") if port is not None else "",
        port_name=(port.name or "") if port is not None else "",
        bind=listener.bind or "",
        capture_mode=listener.capture_mode or "DEFAULT",
    )


def _bound_to_mesh(vs: Config) -> bool:
    return not vs.spec.gateways or MESH_GATEWAY in vs.spec.gateways


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
