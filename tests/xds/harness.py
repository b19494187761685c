"""Helpers for xDS tests: hand-built Envoy resources, loopback upstreams, polling."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TypeVar

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import duration_pb2

from malla.xds import resources

T = TypeVar("T")


def ads() -> config_source_pb2.ConfigSource:
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.V3)


def socket_address(port: int, host: str = "127.0.0.1") -> address_pb2.Address:
    return address_pb2.Address(socket_address=address_pb2.SocketAddress(
        address=host, port_value=port))


def http_listener(name: str, *, route_config: str, port: int = 0) -> listener_pb2.Listener:
    manager = hcm_pb2.HttpConnectionManager(
        stat_prefix=name,
        rds=hcm_pb2.Rds(config_source=ads(), route_config_name=route_config),
        http_filters=[hcm_pb2.HttpFilter(
            name="envoy.filters.http.router",
            typed_config=resources.pack(router_pb2.Router()))])
    chain = listener_components_pb2.FilterChain(filters=[listener_components_pb2.Filter(
        name="envoy.filters.network.http_connection_manager",
        typed_config=resources.pack(manager))])
    return listener_pb2.Listener(name=name, address=socket_address(port), filter_chains=[chain])


def route_to(name: str, cluster: str) -> route_pb2.RouteConfiguration:
    return route_pb2.RouteConfiguration(name=name, virtual_hosts=[
        route_components_pb2.VirtualHost(name="all", domains=["*"], routes=[
            route_components_pb2.Route(
                match=route_components_pb2.RouteMatch(prefix="/"),
                route=route_components_pb2.RouteAction(cluster=cluster))])])


def eds_cluster(name: str, *, connect_timeout_s: int = 1) -> cluster_pb2.Cluster:
    return cluster_pb2.Cluster(
        name=name, type=cluster_pb2.Cluster.EDS,
        connect_timeout=duration_pb2.Duration(seconds=connect_timeout_s),
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(eds_config=ads()))


def broken_cluster(name: str) -> cluster_pb2.Cluster:
    """A cluster Envoy rejects: connect_timeout must be positive."""
    return cluster_pb2.Cluster(
        name=name, type=cluster_pb2.Cluster.STATIC,
        connect_timeout=duration_pb2.Duration(seconds=-1))


def assignment(cluster: str, *ports: int) -> endpoint_pb2.ClusterLoadAssignment:
    return endpoint_pb2.ClusterLoadAssignment(cluster_name=cluster, endpoints=[
        endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=[
            endpoint_components_pb2.LbEndpoint(endpoint=endpoint_components_pb2.Endpoint(
                address=socket_address(port))) for port in ports])])


def snapshot(*messages: object) -> dict[str, dict[str, object]]:
    result: dict[str, dict[str, object]] = {}
    for message in messages:
        result.setdefault(resources.type_url_of(message), {})[
            resources.resource_name(message)] = message
    return result


class Upstream:
    """A tiny HTTP server on 127.0.0.1 answering every GET with its name."""

    def __init__(self, name: str) -> None:
        self.name = name
        body = name.encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def http_get(port: int, path: str = "/", *, timeout: float = 2.0) -> tuple[int, str]:
    """GET through Envoy; (0, error) when the connection fails."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    except OSError as exc:
        return 0, repr(exc)
    finally:
        conn.close()


def wait_for(probe: Callable[[], T], accept: Callable[[T], bool], *,
             timeout: float = 5.0, interval: float = 0.02, what: str = "condition") -> T:
    """Poll `probe` until `accept` holds; fail with the last value seen."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; "
                                 f"last seen: {value!r}")
        time.sleep(interval)
