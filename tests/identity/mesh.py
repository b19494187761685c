"""Two workloads with real Envoys, mTLS from agents' SDS servers, a CA on loopback.

`Identities` runs the CA (`CAServerThread`) and one `WorkloadIdentityThread`
per workload (rotator + SDS server on a Unix socket), the pieces `malla up`
and `malla run` wire in. The Envoy configs are static bootstraps:
the client Envoy's cluster originates mTLS (`UpstreamTlsContext`), the
server Envoy's listener terminates it (`DownstreamTlsContext`,
`require_client_certificate`), both taking `default` and `ROOTCA` from their
agent over `sds-grpc`. Behind the server Envoy an app echoes the
`x-forwarded-client-cert` header it receives.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509

from malla.agent.identity import CertificateRotator, ca_fetcher
from malla.agent.sds import WorkloadIdentityThread, sds_cluster
from malla.ca.runner import CAServerThread, open_ca
from tests.xds.harness import http_get

TRUST_DOMAIN = "cluster.local"
_TYPE = "type.googleapis.com/"
_TLS = "envoy.transport_sockets.tls"
_HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def spiffe(sa: str) -> str:
    return f"spiffe://{TRUST_DOMAIN}/ns/default/sa/{sa}"


@dataclass
class Agent:
    name: str
    identity: WorkloadIdentityThread

    @property
    def socket(self) -> str:
        return self.identity.socket_path

    @property
    def rotator(self) -> CertificateRotator:
        return self.identity.rotator

    def leaf(self) -> x509.Certificate:
        assert self.rotator.current is not None
        return x509.load_pem_x509_certificate(self.rotator.current.chain_pem)

    def roots(self) -> list[x509.Certificate]:
        assert self.rotator.current is not None
        return x509.load_pem_x509_certificates(self.rotator.current.trust_bundle_pem)


class Identities:
    """The control plane's CA thread and one identity thread per workload, as wired for real."""

    def __init__(self, *, ttl: float) -> None:
        # Unix socket paths are limited to 107 bytes: keep them short.
        self.root = Path(tempfile.mkdtemp(prefix="malla-id-"))
        self.ttl = ttl
        self.ca, self.tokens = open_ca(self.root)
        self.server = CAServerThread(self.ca, tokens=self.tokens, port=0, join_port=0)
        self.server.start()
        self.agents: dict[str, Agent] = {}

    def add_agent(self, name: str) -> Agent:
        """Join as service account `name`, serve SDS, and keep rotating."""
        fetch = ca_fetcher(address=f"127.0.0.1:{self.server.port}",
                           join_address=f"127.0.0.1:{self.server.join_port}",
                           ca_bundle=self.ca.trust_bundle_pem(),
                           token=self.tokens.create_token("default", name, ttl=600))
        rotator = CertificateRotator(spiffe_id=spiffe(name), fetch=fetch, ttl=self.ttl)
        identity = WorkloadIdentityThread(rotator, socket_path=self.root / name / "sds.sock")
        agent = self.agents[name] = Agent(name, identity)
        identity.start(timeout=10)  # a certificate before Envoy starts, as the agent does
        return agent

    def synced(self) -> bool:
        """Every Envoy holds the current secrets of its agent."""
        return all(agent.identity.synced() for agent in self.agents.values())

    def close(self) -> None:
        try:
            for agent in self.agents.values():
                agent.identity.stop()
            self.server.stop(grace=0)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


class EchoApp:
    """The app behind the server Envoy: answers with the XFCC header it got."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = (self.headers.get("x-forwarded-client-cert") or "-").encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def xfcc(body: str) -> dict[str, str]:
    """`By=...;Hash=...;URI=...` as a dict (one element: one hop)."""
    return dict(part.split("=", 1) for part in body.split(";") if "=" in part)


class Traffic(threading.Thread):
    """Sequential GETs through the client Envoy until stopped; every answer is kept."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.results: list[tuple[int, str]] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.results.append(http_get(self.port, timeout=5.0))

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)

    def failures(self) -> list[tuple[int, str]]:
        return [result for result in self.results if result[0] != 200]


# -- Envoy bootstraps -----------------------------------------------------------


def _sds(name: str) -> dict[str, Any]:
    return {"name": name, "sds_config": {"resource_api_version": "V3", "api_config_source": {
        "api_type": "GRPC", "transport_api_version": "V3",
        "grpc_services": [{"envoy_grpc": {"cluster_name": "sds-grpc"}}]}}}


def _common_tls(*, peer: str | None) -> dict[str, Any]:
    validation: dict[str, Any] = {"validation_context_sds_secret_config": _sds("ROOTCA"),
                                  "default_validation_context": {}}
    if peer is not None:
        validation["default_validation_context"]["match_typed_subject_alt_names"] = [
            {"san_type": "URI", "matcher": {"exact": peer}}]
    return {"tls_params": {"tls_minimum_protocol_version": "TLSv1_2",
                           "tls_maximum_protocol_version": "TLSv1_3"},
            "tls_certificate_sds_secret_configs": [_sds("default")],
            "combined_validation_context": validation}


def _hcm(name: str, cluster: str, *, xfcc: bool) -> dict[str, Any]:
    manager: dict[str, Any] = {
        "@type": _TYPE + "envoy.extensions.filters.network.http_connection_manager.v3"
                         ".HttpConnectionManager",
        "stat_prefix": name,
        "route_config": {"name": name, "virtual_hosts": [{"name": "all", "domains": ["*"],
                         "routes": [{"match": {"prefix": "/"}, "route": {"cluster": cluster}}]}]},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
            "@type": _TYPE + "envoy.extensions.filters.http.router.v3.Router"}}],
    }
    if xfcc:
        manager["forward_client_cert_details"] = "SANITIZE_SET"
        manager["set_current_client_cert_details"] = {"uri": True}
    return {"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}


def _static_cluster(name: str, port: int, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "STATIC", "connect_timeout": "2s",
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{
                "endpoint": {"address": {"socket_address": {
                    "address": "127.0.0.1", "port_value": port}}}}]}]}, **extra}


def _bootstrap(listener: dict[str, Any], clusters: list[dict[str, Any]]) -> dict[str, Any]:
    return {"node": {"id": listener["name"], "cluster": listener["name"]},
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
            "static_resources": {"listeners": [listener], "clusters": clusters}}


def server_bootstrap(*, sds_socket: str, app_port: int) -> dict[str, Any]:
    """Inbound: mTLS required, XFCC to the app."""
    tls = {"name": _TLS, "typed_config": {
        "@type": _TYPE + "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
        "require_client_certificate": True, "common_tls_context": _common_tls(peer=None)}}
    listener = {"name": "inbound", "address": {"socket_address": {
        "address": "127.0.0.1", "port_value": 0}},
        "filter_chains": [{"transport_socket": tls,
                           "filters": [_hcm("inbound", "app", xfcc=True)]}]}
    return _bootstrap(listener, [_static_cluster("app", app_port), sds_cluster(sds_socket)])


def client_bootstrap(*, sds_socket: str, server_port: int, server_id: str) -> dict[str, Any]:
    """Outbound: plain HTTP in, mTLS to the server Envoy; one request per upstream connection,
    so every request makes a fresh handshake with the newest certificate."""
    tls = {"name": _TLS, "typed_config": {
        "@type": _TYPE + "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        "sni": "server.default.svc.cluster.local", "common_tls_context": _common_tls(peer=server_id)}}
    options = {_HTTP_OPTIONS: {"@type": _TYPE + _HTTP_OPTIONS,
                               "common_http_protocol_options": {"max_requests_per_connection": 1},
                               "explicit_http_config": {"http_protocol_options": {}}}}
    server = _static_cluster("server", server_port, transport_socket=tls,
                             typed_extension_protocol_options=options)
    listener = {"name": "outbound", "address": {"socket_address": {
        "address": "127.0.0.1", "port_value": 0}},
        "filter_chains": [{"filters": [_hcm("outbound", "server", xfcc=False)]}]}
    return _bootstrap(listener, [server, sds_cluster(sds_socket)])
