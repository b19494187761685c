"""Gateway checks: workloads and ports, credentials, conflicting and certificate-sharing gateways.

- gateway.IngressGatewayPortAnalyzer: the selector matches some pod (IST0101)
  and each server port is a target port of a Service in front of those pods
  (IST0162).
- gateway.SecretAnalyzer: ``credentialName`` names a Secret in the gateway
  workload's namespace (IST0101) holding a usable certificate (IST0161).
- gateway.ConflictingGatewayAnalyzer: two Gateways on the same workload and
  port claim the same host with the same bind (IST0145).
- gateway.CertificateAnalyzer: two Gateways on one workload serve the same
  certificate, so HTTP/2 connection reuse can send requests to the wrong
  server (IST0138).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from malla.analysis import kube
from malla.analysis.context import AnalysisContext, full_name
from malla.analysis.credentials import certificate_problem
from malla.analysis.registry import analyzer
from malla.api.networking.gateway import Server, ServerTLSSettings
from malla.config.model import Config, KubeObject


def _selected_pods(ctx: AnalysisContext, selector: Mapping[str, str]) -> list[KubeObject]:
    return [pod for pod in ctx.kube("Pod") if kube.labels_match(selector, pod.labels)]


def _service_ports(ctx: AnalysisContext, pod: KubeObject) -> set[int]:
    """TCP ports a gateway server on ``pod`` may name: each selecting Service's port and target port.

    A server port equal to a Service port is translated to that port's
    targetPort by Istio, so either number reaches the proxy.
    """
    ports: set[int] = set()
    ns = kube.namespace_of(pod)
    for svc in ctx.kube("Service"):
        selector = kube.service_selector(svc)
        if kube.namespace_of(svc) != ns or not selector or not kube.labels_match(selector, pod.labels):
            continue
        for port in kube.service_ports(svc):
            if kube.port_protocol(port) == "TCP":
                ports.add(port.get("port", 0))
                ports.add(kube.target_port_number(port) or port.get("port", 0))
    return ports


@analyzer(
    "gateway.IngressGatewayPortAnalyzer",
    "Checks a gateway's ports against the gateway's Kubernetes service ports",
    "ReferencedResourceNotFound",
    "GatewayPortNotDefinedOnService",
)
def ingress_gateway_port_analyzer(ctx: AnalysisContext) -> None:
    for gw in ctx.configs("Gateway"):
        selector = kube.selector_string(gw.spec.selector)
        pods = _selected_pods(ctx, gw.spec.selector)
        if not pods:
            ctx.report(gw, "ReferencedResourceNotFound", "selector", selector, field="spec.selector")
            continue
        ports = set().union(*(_service_ports(ctx, pod) for pod in pods))
        for i, server in enumerate(gw.spec.servers):
            if server.port is not None and (server.port.number or 0) not in ports:
                ctx.report(gw, "GatewayPortNotDefinedOnService", server.port.number or 0, selector, field=f"spec.servers[{i}].port.number")


def _credential_names(server: Server) -> Iterator[tuple[str, str]]:
    tls = server.tls
    if tls is None:
        return
    if tls.credential_name:
        yield "tls.credentialName", tls.credential_name
    for j, name in enumerate(tls.credential_names):
        yield f"tls.credentialNames[{j}]", name


@analyzer(
    "gateway.SecretAnalyzer",
    "Checks a gateway's referenced secrets for correctness",
    "ReferencedResourceNotFound",
    "InvalidGatewayCredential",
)
def secret_analyzer(ctx: AnalysisContext) -> None:
    for gw in ctx.configs("Gateway"):
        pods = _selected_pods(ctx, gw.spec.selector)
        if not pods:
            ctx.report(gw, "ReferencedResourceNotFound", "selector", kube.selector_string(gw.spec.selector), field="spec.selector")
            continue
        # Credentials are read in the namespace of the gateway workload, not of the Gateway resource.
        workload_ns = kube.namespace_of(pods[0]) or ""
        for i, server in enumerate(gw.spec.servers):
            for where, name in _credential_names(server):
                ns, _, short = name.rpartition("/")
                secret = ctx.find_kube("Secret", ns or workload_ns, short)
                field = f"spec.servers[{i}].{where}"
                if secret is None:
                    ctx.report(gw, "ReferencedResourceNotFound", "credentialName", name, field=field)
                elif certificate_problem(secret, now=ctx.now) is not None:
                    ctx.report(gw, "InvalidGatewayCredential", gw.name, workload_ns, field=field)


# --- conflicting gateways -------------------------------------------------------------


def _same_workload(ctx: AnalysisContext, a: Config, b: Config) -> bool:
    """Two gateways configure the same proxies: equal selectors, or a pod both select."""
    if dict(a.spec.selector) == dict(b.spec.selector):
        return True
    return any(kube.labels_match(b.spec.selector, pod.labels) for pod in _selected_pods(ctx, a.spec.selector))


def _port_of(server: Server) -> int:
    return (server.port.number or 0) if server.port else 0


def _claims_same_host(server: Server, other: Config) -> bool:
    for theirs in other.spec.servers:
        if _port_of(theirs) == _port_of(server) and (theirs.bind or "") == (server.bind or ""):
            if set(server.hosts) & set(theirs.hosts):
                return True
    return False


@analyzer(
    "gateway.ConflictingGatewayAnalyzer",
    "Checks a gateway's selector, port number and hosts",
    "ConflictingGateways",
)
def conflicting_gateway_analyzer(ctx: AnalysisContext) -> None:
    gateways = list(ctx.configs("Gateway"))
    for gw in gateways:
        peers = [o for o in gateways if o is not gw and _same_workload(ctx, gw, o)]
        for i, server in enumerate(gw.spec.servers):
            conflicts = sorted(full_name(o) for o in peers if _claims_same_host(server, o))
            if conflicts:
                ctx.report(
                    gw,
                    "ConflictingGateways",
                    ",".join(conflicts),
                    kube.selector_string(gw.spec.selector),
                    str(_port_of(server)),
                    ",".join(server.hosts),
                    field=f"spec.servers[{i}]",
                )


# --- shared certificates ----------------------------------------------------------------


def _same_certificate(a: ServerTLSSettings, b: ServerTLSSettings) -> bool:
    if a.credential_name or b.credential_name:
        return a.credential_name == b.credential_name
    if a.server_certificate and a.server_certificate == b.server_certificate:
        return bool(a.private_key) and a.private_key == b.private_key
    return False


def _selector_subset(small: Mapping[str, str], large: Mapping[str, str]) -> bool:
    return all(large.get(k) == v for k, v in small.items())


@analyzer(
    "gateway.CertificateAnalyzer",
    "Checks a gateway certificate",
    "GatewayDuplicateCertificate",
)
def certificate_analyzer(ctx: AnalysisContext) -> None:
    gateways = list(ctx.configs("Gateway"))
    for gw in gateways:
        # Another gateway whose selector includes ours runs on (some of) the same proxies.
        peers = [o for o in gateways if o is not gw and _selector_subset(gw.spec.selector, o.spec.selector)]
        for other in peers:
            shared = any(
                mine.tls and theirs.tls and _same_certificate(mine.tls, theirs.tls)
                for mine in gw.spec.servers
                for theirs in other.spec.servers
            )
            if shared:
                ctx.report(gw, "GatewayDuplicateCertificate", [full_name(gw), full_name(other)], field="metadata.name")


ANALYZERS = (ingress_gateway_port_analyzer, secret_analyzer, conflicting_gateway_analyzer, certificate_analyzer)
