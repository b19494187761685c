"""VirtualService reference checks: destination hosts and ports, subsets, JWT claim routes.

- virtualservice.DestinationHostAnalyzer: every route and mirror host is a
  visible Service or ServiceEntry host (IST0101), names a port the host has
  (IST0101) or one is needed (IST0112); a gateway route without a subset to a
  host another VirtualService splits by subset is flagged (IST0140).
- virtualservice.DestinationRuleAnalyzer: a subset named by a destination is
  defined by a DestinationRule for that host (IST0101).
- virtualservice.JWTClaimRouteAnalyzer: routing on ``@request.auth.claims``
  at a gateway needs a RequestAuthentication on the gateway's pods (IST0149).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

from malla.analysis import kube
from malla.analysis.context import AnalysisContext
from malla.analysis.host_index import HostEntry, HostIndex
from malla.analysis.hosts import MESH_GATEWAY, service_name_for_host, to_fqdn
from malla.analysis.registry import analyzer
from malla.analysis.virtual_service_gateways import find_gateway, gateway_ref
from malla.api.networking.virtual_service import Destination, VirtualService
from malla.config.model import Config

JWT_CLAIM_PREFIX = "@request.auth.claims"


@dataclass(frozen=True)
class RouteTarget:
    """One destination in a VirtualService and where it is written."""

    rule: str  # "http", "tcp", "tls", "http.mirror", "http.mirrors"
    field: str  # "spec.http[0].route[1].destination"
    destination: Destination | None

    @property
    def host(self) -> str:
        return (self.destination.host if self.destination else None) or ""

    @property
    def subset(self) -> str:
        return (self.destination.subset if self.destination else None) or ""

    @property
    def port(self) -> int | None:
        d = self.destination
        return d.port.number if d and d.port and d.port.number else None

    @property
    def is_mirror(self) -> bool:
        return self.rule.startswith("http.mirror")


def route_targets(vs: VirtualService) -> Iterator[RouteTarget]:
    """Route destinations in Istio's order: tcp, tls, then http."""
    for kind, rules in (("tcp", vs.tcp), ("tls", vs.tls), ("http", vs.http)):
        for i, rule in enumerate(rules):
            for j, rd in enumerate(rule.route):
                yield RouteTarget(kind, f"spec.{kind}[{i}].route[{j}].destination", rd.destination)


def mirror_targets(vs: VirtualService) -> Iterator[RouteTarget]:
    for i, rule in enumerate(vs.http):
        if rule.mirror is not None:
            yield RouteTarget("http.mirror", f"spec.http[{i}].mirror", rule.mirror)
        for j, m in enumerate(rule.mirrors):
            yield RouteTarget("http.mirrors", f"spec.http[{i}].mirrors[{j}].destination", m.destination)


# --- destination hosts --------------------------------------------------------


def _check_ports(ctx: AnalysisContext, vs: Config, target: RouteTarget, entry: HostEntry) -> None:
    port = target.port
    if port is None:
        # Without a port the destination is ambiguous only when the host has several.
        if len(entry.ports) > 1:
            ctx.report(vs, "VirtualServiceDestinationPortSelectorRequired", target.host, list(entry.ports), field=f"{target.field}.host")
        return
    if port not in entry.ports:
        ctx.report(vs, "ReferencedResourceNotFound", "host:port", f"{target.host}:{port}", field=f"{target.field}.port.number")


def _subset_destinations(ctx: AnalysisContext) -> dict[str, list[str]]:
    """For each VirtualService, the hosts of its own hosts it routes to by subset."""
    found: dict[str, list[str]] = defaultdict(list)
    for vs in ctx.configs("VirtualService"):
        for rule in vs.spec.http:
            for rd in rule.route:
                d = rd.destination
                if d and d.subset and d.host in vs.spec.hosts:
                    found[f"{vs.namespace}/{vs.name}"].append(d.host)
    return found


def _check_gateway_subsets(ctx: AnalysisContext, vs: Config, by_subset: dict[str, list[str]]) -> None:
    # Subset routing happens at the sidecar; a gateway route without a subset bypasses it.
    if not vs.spec.gateways:
        return
    for i, rule in enumerate(vs.spec.http):
        for j, rd in enumerate(rule.route):
            d = rd.destination
            if d is None or d.subset:
                continue
            for other, hosts in sorted(by_subset.items()):
                if d.host in hosts:
                    ctx.report(
                        vs, "IngressRouteRulesNotAffected", other, f"{vs.namespace}/{vs.name}", field=f"spec.http[{i}].route[{j}].destination.host"
                    )


@analyzer(
    "virtualservice.DestinationHostAnalyzer",
    "Checks the destination hosts associated with each virtual service",
    "ReferencedResourceNotFound",
    "VirtualServiceDestinationPortSelectorRequired",
    "IngressRouteRulesNotAffected",
)
def destination_host_analyzer(ctx: AnalysisContext) -> None:
    index = HostIndex(ctx)
    by_subset = _subset_destinations(ctx)
    for vs in ctx.configs("VirtualService"):
        for target in (*route_targets(vs.spec), *mirror_targets(vs.spec)):
            entry = index.lookup(target.host, namespace=vs.namespace, export_to=vs.spec.export_to)
            if entry is None:
                what = "mirror host" if target.is_mirror else "host"
                ctx.report(vs, "ReferencedResourceNotFound", what, target.host, field=f"{target.field}.host")
                continue
            _check_ports(ctx, vs, target, entry)
        _check_gateway_subsets(ctx, vs, by_subset)


# --- subsets --------------------------------------------------------------------


@analyzer(
    "virtualservice.DestinationRuleAnalyzer",
    "Checks the destination rules associated with each virtual service",
    "ReferencedResourceNotFound",
)
def destination_rule_analyzer(ctx: AnalysisContext) -> None:
    domain = ctx.mesh.cluster_domain
    defined: set[tuple[tuple[str, str], str]] = set()
    for dr in ctx.configs("DestinationRule"):
        host = to_fqdn(dr.spec.host or "", dr.namespace, cluster_domain=domain)
        name = service_name_for_host(host, dr.namespace, cluster_domain=domain)
        defined.update((name, s.name or "") for s in dr.spec.subsets)
    for vs in ctx.configs("VirtualService"):
        for target in (*route_targets(vs.spec), *mirror_targets(vs.spec)):
            if not target.subset:
                continue
            name = service_name_for_host(target.host, vs.namespace, cluster_domain=domain)
            if (name, target.subset) in defined:
                continue
            what = "mirror+subset in destinationrule" if target.is_mirror else "host+subset in destinationrule"
            ctx.report(vs, "ReferencedResourceNotFound", what, f"{target.host}+{target.subset}", field=f"{target.field}.subset")


# --- JWT claim routing ------------------------------------------------------------


def _jwt_claim_key(vs: VirtualService) -> str | None:
    for rule in vs.http:
        for match in rule.match:
            for key in (*match.headers, *match.without_headers):
                if key.startswith(JWT_CLAIM_PREFIX):
                    return key
    return None


@analyzer(
    "virtualservice.JWTClaimRouteAnalyzer",
    "Checks the VirtualService using JWT claim based routing has corresponding RequestAuthentication",
    "JwtClaimBasedRoutingWithoutRequestAuthN",
)
def jwt_claim_route_analyzer(ctx: AnalysisContext) -> None:
    selectors: dict[str, list[dict[str, str]]] = defaultdict(list)
    for ra in ctx.configs("RequestAuthentication"):
        selectors[ra.namespace].append(dict(ra.spec.selector.match_labels) if ra.spec.selector else {})
    for vs in ctx.configs("VirtualService"):
        key = _jwt_claim_key(vs.spec)
        if key is None:
            continue
        for i, name in enumerate(vs.spec.gateways):
            if name == MESH_GATEWAY:
                continue
            gw = find_gateway(ctx, name, namespace=vs.namespace)
            if gw is None:
                continue  # the gateway analyzer reports it
            for pod in ctx.kube("Pod"):
                if not kube.labels_match(gw.spec.selector, pod.labels):
                    continue
                candidates = selectors[ctx.mesh.root_namespace] + selectors[kube.namespace_of(pod) or ""]
                if not any(kube.labels_match(sel, pod.labels) for sel in candidates):
                    ctx.report(
                        vs,
                        "JwtClaimBasedRoutingWithoutRequestAuthN",
                        key,
                        gateway_ref(name, namespace=vs.namespace),
                        pod.name,
                        field=f"spec.gateways[{i}]",
                    )


ANALYZERS = (destination_host_analyzer, destination_rule_analyzer, jwt_claim_route_analyzer)
