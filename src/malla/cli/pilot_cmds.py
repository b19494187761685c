"""``malla translate`` (offline) and ``malla proxy-config`` (live): Envoy config, readable."""

from __future__ import annotations

import enum
from typing import Annotated, Any

import typer
from google.protobuf.json_format import MessageToDict
from rich.markup import escape
from rich.table import Table

from malla.cli.certificates import show_secret
from malla.cli.client import call, require_control_plane
from malla.cli.output import OutputFormat, console, emit_data, err_console

OutputOpt = Annotated[OutputFormat, typer.Option("--output", "-o", help="text, json or yaml.")]

_TYPES = {
    "clusters": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
    "listeners": "type.googleapis.com/envoy.config.listener.v3.Listener",
    "routes": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
    "endpoints": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
    "secrets": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
}


class Section(str, enum.Enum):
    clusters = "clusters"
    listeners = "listeners"
    routes = "routes"
    endpoints = "endpoints"
    secrets = "secrets"
    secret = "secret"  # istioctl's name: proxy-config shows the agent's certificate for both
    all = "all"


def translate(
    filename: Annotated[list[str], typer.Option("--filename", "-f", help="Istio YAML: files, directories or '-'.")],
    proxy_labels: Annotated[str, typer.Option("--proxy-labels", help="The proxy's labels: app=reviews,version=v1.")] = "",
    namespace: Annotated[str, typer.Option("--namespace", "-n", help="The proxy's namespace.")] = "default",
    port: Annotated[list[str] | None, typer.Option("--port", help="A port the workload serves: 9080/http (repeatable).")] = None,
    router: Annotated[bool, typer.Option("--router", help="Translate for a gateway (router) proxy, not a sidecar.")] = False,
    ip: Annotated[str, typer.Option(help="The proxy's address.")] = "127.0.0.1",
    section: Annotated[Section, typer.Option("--section", "-s", help="Which resources to print.")] = Section.all,
    output: OutputOpt = OutputFormat.yaml,
) -> None:
    """Offline: Istio config in, the Envoy config one proxy would get out. Nothing is started."""
    from malla.config.files import load_paths
    from malla.pilot.generate import generate
    from malla.pilot.protocol import Protocol
    from malla.pilot.snapshot import InboundPort, MeshSnapshot, Proxy, ProxyKind

    result, _ = load_paths(filename, default_namespace=namespace)
    for d in result.diagnostics:
        err_console.print(escape(d.format()))
    if result.errors:
        err_console.print("[red]✘ fix the errors above first: translation uses valid config only[/red]")
        raise typer.Exit(1)
    labels = _parse_labels(proxy_labels)
    inbound = tuple(_parse_port(p, Protocol, InboundPort) for p in (port or []))
    proxy = Proxy(
        id=f"{'router' if router else 'sidecar'}~{ip}~translate.{namespace}~{namespace}.svc.cluster.local",
        namespace=namespace, labels=labels, ip=ip, inbound=inbound,
        kind=ProxyKind.ROUTER if router else ProxyKind.SIDECAR,
    )
    snapshot = MeshSnapshot.build(
        configs=result.configs, kube_services=[k.body for k in result.kube if k.kind == "Service"]
    )
    resources = generate(proxy, snapshot)
    _explain_envoy_filters(proxy, snapshot, configs=result.configs,
                           kube_services=[k.body for k in result.kube if k.kind == "Service"])
    data = {name: [MessageToDict(m) for _, m in sorted(resources.get(url, {}).items())] for name, url in _TYPES.items()
            if url in resources and (section is Section.all or section.value == name)}
    if output is OutputFormat.text:
        _print_tables(data)
    else:
        emit_data(data, output)


def _explain_envoy_filters(proxy: Any, snapshot: Any, *, configs: list[Any], kube_services: list[Any]) -> None:
    """On stderr: which EnvoyFilters touched this proxy's config, which patches applied, which were skipped and why."""
    from malla.pilot.envoy_filters import applicable_envoy_filters, explain_envoy_filters
    from malla.pilot.generate import generate
    from malla.pilot.snapshot import MeshSnapshot

    if not applicable_envoy_filters(proxy, snapshot):
        return
    base = MeshSnapshot.build(configs=[c for c in configs if c.kind != "EnvoyFilter"], kube_services=kube_services)
    report = explain_envoy_filters(proxy, snapshot, generate(proxy, base))
    err_console.print(f"EnvoyFilters for this proxy, in order: {escape(', '.join(report.filters))}")
    for where in report.applied:
        err_console.print(f"  [green]applied[/green] {escape(where)}")
    for problem in report.problems:
        err_console.print(f"  [yellow]skipped[/yellow] {escape(str(problem))}")


def _parse_labels(text: str) -> dict[str, str]:
    labels = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key:
            err_console.print(f"[red]error:[/red] --proxy-labels: {part!r} is not key=value")
            raise typer.Exit(2)
        labels[key] = value
    return labels


def _parse_port(text: str, protocol_cls: Any, inbound_cls: Any) -> Any:
    number, _, proto = text.partition("/")
    try:
        n = int(number)
        protocol = protocol_cls[(proto or "tcp").upper().replace("-", "_")]
    except (ValueError, KeyError):
        err_console.print(f"[red]error:[/red] --port {text!r}: use NUMBER[/PROTOCOL], e.g. 9080/http")
        raise typer.Exit(2) from None
    return inbound_cls(port=n, app_port=n, name=(proto or "tcp").lower(), protocol=protocol)


def proxy_config(
    section: Annotated[Section, typer.Argument(help="clusters, listeners, routes, endpoints, secrets or all")],
    proxy: Annotated[str, typer.Argument(help="The proxy: its node id, or a unique part of it (e.g. the workload name).")],
    home: Annotated[str | None, typer.Option("--home")] = None,
    output: OutputOpt = OutputFormat.text,
) -> None:
    """The Envoy config the control plane serves to one proxy; secret: the certificate its agent serves it."""
    _, state = require_control_plane(home)
    if section in (Section.secret, Section.secrets):
        show_secret(state, proxy, output)
        return
    resp = call(state, "GET", f"/api/v1/proxies/{proxy}/config")
    if resp.status_code == 404:
        err_console.print(f"[red]error:[/red] {resp.json()['error']}; 'malla proxy-status' lists the proxies")
        raise typer.Exit(1)
    body = resp.json()
    data = {name: body["resources"].get(url, []) for name, url in _TYPES.items()
            if section is Section.all or section.value == name}
    if output is OutputFormat.text:
        console.print(f"proxy {escape(body['node'])} (config version {body['version'][:12]})")
        _print_tables(data)
    else:
        emit_data(data, output)


def _print_tables(data: dict[str, list[dict[str, Any]]]) -> None:
    for name, items in data.items():
        if name == "clusters":
            t = Table("CLUSTER", "TYPE", "LB", box=None, pad_edge=False)
            for c in items:
                t.add_row(escape(c.get("name", "")), c.get("type", "EDS"), c.get("lbPolicy", "ROUND_ROBIN"))
        elif name == "listeners":
            t = Table("LISTENER", "ADDRESS", "FILTER CHAINS", box=None, pad_edge=False)
            for x in items:
                sock = x.get("address", {}).get("socketAddress", {})
                t.add_row(escape(x.get("name", "")), f"{sock.get('address', '')}:{sock.get('portValue', '')}", str(len(x.get("filterChains", []))))
        elif name == "routes":
            t = Table("ROUTE CONFIG", "VIRTUAL HOST", "DOMAINS", "ROUTES", box=None, pad_edge=False)
            for r in items:
                for vh in r.get("virtualHosts", []):
                    t.add_row(escape(r.get("name", "")), escape(vh.get("name", "")), escape(",".join(vh.get("domains", [])[:4])), str(len(vh.get("routes", []))))
        elif name == "endpoints":
            t = Table("CLUSTER", "ENDPOINT", "WEIGHT", box=None, pad_edge=False)
            for a in items:
                for group in a.get("endpoints", []):
                    for ep in group.get("lbEndpoints", []):
                        sock = ep.get("endpoint", {}).get("address", {}).get("socketAddress", {})
                        t.add_row(escape(a.get("clusterName", "")), f"{sock.get('address', '')}:{sock.get('portValue', '')}", str(ep.get("loadBalancingWeight", 1)))
        else:
            t = Table("SECRET", box=None, pad_edge=False)
            for s in items:
                t.add_row(escape(s.get("name", "")))
        console.print(t)
        console.print()
