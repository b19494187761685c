"""Send a described request through generated config: which listener, chain, route and cluster it meets.

Istio's ``pilot/pkg/simulation`` in small: it reads the resources
``generate`` returned and follows Envoy's own selection rules: a listener by
address and port (additional addresses too); a filter chain by destination
port, then SNI (exact, then the longest wildcard), then transport protocol,
the most specific match winning at each step; a virtual host by domain
(exact, longest ``*.suffix``, longest ``prefix.*``, then ``*``); the first
route whose path, headers and query parameters match. Behaviour, not proto
shape: tests assert what a request would do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import re2
from envoy.config.listener.v3 import listener_components_pb2 as lc
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from google.protobuf.message import Message

from malla.pilot.resources import LISTENER, ROUTE
from malla.pilot.routes_http import FAULT_FILTER


@dataclass(frozen=True)
class Request:
    """A request as a client makes it. ``address`` None: whichever listener has the port.

    ``listener`` names the listener outright, for redirected traffic: a request captured
    inbound arrives at ``virtualInbound`` whatever its destination port.
    """

    port: int
    address: str | None = None
    listener: str | None = None
    protocol: str = "http"  # "http" or "tcp"
    host: str = ""  # the Host header
    path: str = "/"
    method: str = "GET"
    scheme: str = "http"
    headers: Mapping[str, str] = field(default_factory=dict)
    tls: bool = False  # the client speaks TLS (Istio mTLS, or its own)
    sni: str = ""


@dataclass
class Result:
    listener: str | None = None
    filter_chain: str | None = None
    route_config: str | None = None
    virtual_host: str | None = None
    route: rc.Route | None = None
    cluster: str | None = None
    weighted_clusters: tuple[tuple[str, int], ...] = ()
    direct_response: int | None = None
    redirect: rc.RedirectAction | None = None
    error: str | None = None

    @property
    def route_name(self) -> str | None:
        return self.route.name if self.route is not None else None

    @property
    def fault(self) -> fault_pb2.HTTPFault | None:
        if self.route is None or FAULT_FILTER not in self.route.typed_per_filter_config:
            return None
        out = fault_pb2.HTTPFault()
        self.route.typed_per_filter_config[FAULT_FILTER].Unpack(out)
        return out


def simulate(resources: Mapping[str, Mapping[str, Message]], request: Request) -> Result:
    result = Result()
    listener = _listener(resources.get(LISTENER, {}).values(), request)
    if listener is None:
        result.error = f"no listener on port {request.port}"
        return result
    result.listener = listener.name
    chain = _filter_chain(listener, request)
    if chain is None:
        result.error = "no filter chain matched (the connection is closed)"
        return result
    result.filter_chain = chain.name
    for f in chain.filters:
        if f.typed_config.Is(hcm_pb2.HttpConnectionManager.DESCRIPTOR):
            manager = hcm_pb2.HttpConnectionManager()
            f.typed_config.Unpack(manager)
            return _http(resources, manager, request, result)
        if f.typed_config.Is(tcp_proxy_pb2.TcpProxy.DESCRIPTOR):
            proxy = tcp_proxy_pb2.TcpProxy()
            f.typed_config.Unpack(proxy)
            result.cluster = proxy.cluster or None
            result.weighted_clusters = tuple((c.name, c.weight) for c in proxy.weighted_clusters.clusters)
            return result
    result.error = "filter chain has no HTTP connection manager or tcp_proxy"
    return result


def _addresses(listener: listener_pb2.Listener) -> list[tuple[str, int]]:
    all_ = [listener.address, *(a.address for a in listener.additional_addresses)]
    return [(a.socket_address.address, a.socket_address.port_value) for a in all_]


def _listener(listeners: Any, request: Request) -> listener_pb2.Listener | None:
    """By name if given; else exact address, then a wildcard address, then one taking original destinations."""
    listeners = list(listeners)
    if request.listener is not None:
        return next((x for x in listeners if x.name == request.listener), None)
    wildcard = None
    for listener in listeners:
        for address, port in _addresses(listener):
            if port != request.port:
                continue
            if request.address in (None, address):
                return listener
            if address in ("0.0.0.0", "::") and wildcard is None:
                wildcard = listener
    if wildcard is not None:
        return wildcard
    return next((x for x in listeners if x.use_original_dst.value), None)


def _filter_chain(listener: listener_pb2.Listener, request: Request) -> lc.FilterChain | None:
    chains = list(listener.filter_chains)
    chains = _most_specific(
        chains, lambda m: m.HasField("destination_port"), lambda m: m.destination_port.value == request.port
    )
    chains = _by_server_name(chains, request.sni)
    transport = "tls" if request.tls else "raw_buffer"
    chains = _most_specific(chains, lambda m: bool(m.transport_protocol), lambda m: m.transport_protocol == transport)
    if chains:
        return chains[0]
    return listener.default_filter_chain if listener.HasField("default_filter_chain") else None


def _most_specific(chains: list[lc.FilterChain], has: Any, matches: Any) -> list[lc.FilterChain]:
    specific = [c for c in chains if has(c.filter_chain_match) and matches(c.filter_chain_match)]
    return specific or [c for c in chains if not has(c.filter_chain_match)]


def _by_server_name(chains: list[lc.FilterChain], sni: str) -> list[lc.FilterChain]:
    exact = [c for c in chains if sni and sni in c.filter_chain_match.server_names]
    if exact:
        return exact
    best, found = -1, []
    for c in chains:
        for name in c.filter_chain_match.server_names:
            if name.startswith("*.") and sni.endswith(name[1:]) and len(name) >= best:
                found = found + [c] if len(name) == best else [c]
                best = len(name)
    return found or [c for c in chains if not c.filter_chain_match.server_names]


def _http(
    resources: Mapping[str, Mapping[str, Message]],
    manager: hcm_pb2.HttpConnectionManager,
    request: Request,
    result: Result,
) -> Result:
    if manager.HasField("rds"):
        result.route_config = manager.rds.route_config_name
        config = resources.get(ROUTE, {}).get(result.route_config)
        if config is None:
            result.error = f"route configuration {result.route_config!r} is missing (the listener refuses connections)"
            return result
    else:
        config = manager.route_config
        result.route_config = config.name
    host = request.host.lower()
    if manager.strip_any_host_port:
        host = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    vhost = select_virtual_host(config.virtual_hosts, host)
    if vhost is None:
        result.error = f"no virtual host for {request.host!r} (404)"
        return result
    result.virtual_host = vhost.name
    if vhost.require_tls == rc.VirtualHost.ALL and request.scheme != "https":
        result.direct_response = 301
        return result
    route = next((r for r in vhost.routes if route_matches(r.match, request)), None)
    if route is None:
        result.error = "no route matched (404)"
        return result
    result.route = route
    if route.HasField("direct_response"):
        result.direct_response = route.direct_response.status
    elif route.HasField("redirect"):
        result.redirect = route.redirect
    else:
        result.cluster = route.route.cluster or None
        result.weighted_clusters = tuple((c.name, c.weight.value) for c in route.route.weighted_clusters.clusters)
    return result


def select_virtual_host(vhosts: Any, host: str) -> rc.VirtualHost | None:
    """Envoy's order: exact domain, longest ``*`` suffix wildcard, longest ``*`` prefix wildcard, then ``*``."""
    exact = [v for v in vhosts if host in (d.lower() for d in v.domains)]
    if exact:
        return exact[0]
    for kind in ("suffix", "prefix"):
        best: tuple[int, rc.VirtualHost | None] = (-1, None)
        for v in vhosts:
            for d in v.domains:
                d = d.lower()
                if d == "*":
                    continue
                ok = (
                    d.startswith("*") and host.endswith(d[1:]) and len(host) > len(d) - 1
                    if kind == "suffix"
                    else d.endswith("*") and host.startswith(d[:-1]) and len(host) > len(d) - 1
                )
                if ok and len(d) > best[0]:
                    best = (len(d), v)
        if best[1] is not None:
            return best[1]
    return next((v for v in vhosts if "*" in v.domains), None)


def route_matches(match: rc.RouteMatch, request: Request) -> bool:
    parts = urlsplit(request.path)
    path = parts.path or "/"
    sensitive = not match.HasField("case_sensitive") or match.case_sensitive.value
    folded = path if sensitive else path.lower()
    which = match.WhichOneof("path_specifier")
    if which == "prefix" and not folded.startswith(match.prefix if sensitive else match.prefix.lower()):
        return False
    if which == "path" and folded != (match.path if sensitive else match.path.lower()):
        return False
    if which == "safe_regex" and not re2.fullmatch(match.safe_regex.regex, path):
        return False
    if which == "path_separated_prefix":
        p = match.path_separated_prefix
        if not (path == p or path.startswith(p + "/")):
            return False
    headers = {k.lower(): v for k, v in request.headers.items()}
    headers.update(
        {":method": request.method, ":authority": request.host, ":scheme": request.scheme, ":path": request.path}
    )
    if not all(_header_matches(h, headers.get(h.name)) for h in match.headers):
        return False
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    return all(_query_matches(q, query.get(q.name)) for q in match.query_parameters)


def _header_matches(h: rc.HeaderMatcher, value: str | None) -> bool:
    if h.present_match:
        ok = value is not None
    elif value is None:
        ok = False
    elif h.HasField("string_match"):
        ok = string_matches(h.string_match, value)
    else:
        ok = h.exact_match == value
    return ok != h.invert_match


def _query_matches(q: rc.QueryParameterMatcher, value: str | None) -> bool:
    if q.present_match:
        return value is not None
    return value is not None and string_matches(q.string_match, value)


def string_matches(m: Any, value: str) -> bool:
    which = m.WhichOneof("match_pattern")
    v = value.lower() if m.ignore_case else value
    if which == "exact":
        return v == (m.exact.lower() if m.ignore_case else m.exact)
    if which == "prefix":
        return v.startswith(m.prefix.lower() if m.ignore_case else m.prefix)
    if which == "suffix":
        return v.endswith(m.suffix.lower() if m.ignore_case else m.suffix)
    if which == "contains":
        return (m.contains.lower() if m.ignore_case else m.contains) in v
    if which == "safe_regex":
        return re2.fullmatch(m.safe_regex.regex, value) is not None
    return False
