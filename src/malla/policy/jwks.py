"""Where a JWT rule's keys come from: inline ``jwks``, or ``jwksUri`` fetched by Envoy itself.

Istio's istiod fetches ``jwksUri`` and inlines the keys; malla's translation
does no I/O, so it lets Envoy fetch them (Istio's ``PILOT_JWT_ENABLE_REMOTE_JWKS=envoy``):
a ``remote_jwks`` source and one cluster per distinct scheme, host and port
(``jwks|https://issuer.example.com:443``), added to the CDS of every proxy
that validates such tokens. The fetch is asynchronous with a fast listener
(``async_fetch {fast_listener: true}``): a slow or absent JWKS server never
holds the listener back. A request carrying a token before the keys are in
waits for them (measured: 3 s behind a JWKS server that took 3 s, then
200); while the server cannot be reached such requests get 401, requests
without a token pass, and a failed fetch is retried every second. Keys are
cached for 5 minutes, as in Istio. HTTPS JWKS servers are verified against ``MeshConfig.system_ca_bundle``
and must present a certificate for the URI's host.

A rule with neither ``jwks`` nor ``jwksUri`` (OpenID discovery from the
issuer) cannot be resolved without I/O: it gets a key set that matches no
token, so tokens of that issuer are refused (Istio does the same when its
fetch fails). Inline key sets get that unusable key added, so that a set
Envoy could not load refuses tokens instead of taking the listener down.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2, http_uri_pb2
from envoy.extensions.clusters.common.dns.v3 import dns_pb2
from envoy.extensions.clusters.dns.v3 import dns_cluster_pb2
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2

from malla.api.security.request_authentication import JWTRule
from malla.pilot.cluster_tls import transport_socket
from malla.pilot.endpoints import socket_address
from malla.pilot.proto_values import duration, seconds, typed
from malla.pilot.snapshot import MeshConfig

Cluster = cluster_pb2.Cluster
DNS_CLUSTER_TYPE = "envoy.clusters.dns"
DEFAULT_FETCH_TIMEOUT_SECONDS = 5  # Istio's default for jwtRules[].timeout
CACHE_SECONDS = 5 * 60  # Istio's cache_duration for remote JWKS
_DEFAULT_PORTS = {"http": 80, "https": 443}

# An RSA public key whose private half was discarded: a well-formed key set that verifies no token.
UNUSABLE_JWKS = (
    '{"keys":[{"kty":"RSA","kid":"malla-unresolved","alg":"RS256","e":"AQAB","n":"'
    "q0fzhawUA3WdyjgwAMSbceeuTBe0n1L4Afmjmjcgg6GhXvuVyPrzCwTJ-Y0o_HPoBrasTqkcFo1CXtSn3Wh-mw-lZvzZDMqCbG8Vn5fDuepXGFsRm1"
    "ReR6R_gE9JpZEeKcOBODxlRhK2IM725msFyWSIqrsyIjZeeeCGtod8Ywqqev2RQJ6kLDGhSifBDrsum-fCAkEQc-IAkQJsvzvHxkJRzD2u5Lq_f05W"
    "LKaSalbb2mpXWemWOfsUhOvo0kFGGYoqdWGJCD6q7mneDh6gnBSz6w2YLt8fvzVL37Me437KBG4i0OJX7GADxc87LnLFNgPPpF7Tyi62uyR3I8wu_w"
    '"}]}'
)


@dataclass(frozen=True)
class JwksEndpoint:
    """The server of a ``jwksUri``: scheme, host and port."""

    scheme: str
    host: str
    port: int

    @property
    def cluster_name(self) -> str:
        return f"jwks|{self.scheme}://{self.host}:{self.port}"

    @property
    def host_is_ip(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True


def jwks_endpoint(uri: str) -> JwksEndpoint:
    """The endpoint of an http(s) ``jwksUri``; ValueError naming what is wrong (validation catches it first)."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"jwksUri {uri!r} is not an http:// or https:// URL with a host")
    return JwksEndpoint(scheme=scheme, host=parts.hostname, port=parts.port or _DEFAULT_PORTS[scheme])


def remote_endpoint(rule: JWTRule) -> JwksEndpoint | None:
    """The server Envoy fetches the rule's keys from; None when they are inline (``jwks`` wins over ``jwksUri``).

    A URI validation refused never reaches here; should one, its rule gets the unusable key set.
    """
    if rule.jwks or not rule.jwks_uri:
        return None
    try:
        return jwks_endpoint(rule.jwks_uri)
    except ValueError:
        return None


def translate_jwks_source(rule: JWTRule, provider: jwt_pb2.JwtProvider) -> None:
    """Set the provider's ``local_jwks`` or ``remote_jwks`` from the rule."""
    endpoint = remote_endpoint(rule)
    if endpoint is not None:
        provider.remote_jwks.CopyFrom(translate_remote_jwks(rule, endpoint=endpoint))
    else:
        provider.local_jwks.inline_string = inline_key_set(rule.jwks)


def inline_key_set(jwks: str | None) -> str:
    """The rule's key set, with the unusable key added.

    Envoy refuses a whole listener whose inline key set has no key it can
    load (``Jwks doesn't have any valid public key``), yet validation lets an
    empty or half-broken set through with a warning. The added key loads and
    verifies nothing, so such a rule refuses its issuer's tokens instead of
    taking the listener down; a set with good keys behaves as written.
    """
    try:
        document = json.loads(jwks or "")
    except ValueError:
        return UNUSABLE_JWKS
    unusable = json.loads(UNUSABLE_JWKS)["keys"]
    if isinstance(document, dict) and isinstance(document.get("keys"), list):
        return json.dumps({**document, "keys": [*document["keys"], *unusable]}, separators=(",", ":"))
    if isinstance(document, dict) and "kty" in document:
        return json.dumps({"keys": [document, *unusable]}, separators=(",", ":"))
    return UNUSABLE_JWKS


def translate_remote_jwks(rule: JWTRule, *, endpoint: JwksEndpoint) -> jwt_pb2.RemoteJwks:
    timeout = duration(rule.timeout) if rule.timeout is not None else seconds(DEFAULT_FETCH_TIMEOUT_SECONDS)
    return jwt_pb2.RemoteJwks(
        http_uri=http_uri_pb2.HttpUri(uri=rule.jwks_uri, cluster=endpoint.cluster_name, timeout=timeout),
        cache_duration=seconds(CACHE_SECONDS),
        async_fetch=jwt_pb2.JwksAsyncFetch(fast_listener=True),
    )


def build_jwks_clusters(rules: Iterable[JWTRule], *, mesh: MeshConfig) -> list[Cluster]:
    """One cluster per JWKS server the rules fetch from, sorted by name."""
    endpoints = {e for e in map(remote_endpoint, rules) if e is not None}
    return [build_jwks_cluster(e, mesh=mesh) for e in sorted(endpoints, key=lambda e: e.cluster_name)]


def build_jwks_cluster(endpoint: JwksEndpoint, *, mesh: MeshConfig) -> Cluster:
    name = endpoint.cluster_name
    cluster = Cluster(name=name, connect_timeout=duration(mesh.connect_timeout))
    if endpoint.host_is_ip:
        cluster.type = Cluster.STATIC
    else:
        dns = dns_cluster_pb2.DnsCluster(
            dns_refresh_rate=duration(mesh.dns_refresh_rate),
            respect_dns_ttl=True,
            dns_lookup_family=dns_pb2.V4_PREFERRED,
            all_addresses_in_single_endpoint=True,
        )
        cluster.cluster_type.name = DNS_CLUSTER_TYPE
        cluster.cluster_type.typed_config.CopyFrom(typed(dns))
    cluster.load_assignment.cluster_name = name
    lb_endpoint = cluster.load_assignment.endpoints.add().lb_endpoints.add()
    lb_endpoint.endpoint.address.CopyFrom(socket_address(endpoint.host, endpoint.port))
    if endpoint.scheme == "https":
        cluster.transport_socket.CopyFrom(transport_socket(_server_tls(endpoint, system_ca=mesh.system_ca_bundle)))
    return cluster


def _server_tls(endpoint: JwksEndpoint, *, system_ca: str) -> tls_pb2.UpstreamTlsContext:
    """Verify the JWKS server as a browser would: the system CAs, a certificate naming the host."""
    san_type = common_pb2.SubjectAltNameMatcher.IP_ADDRESS if endpoint.host_is_ip else common_pb2.SubjectAltNameMatcher.DNS
    common = tls_pb2.CommonTlsContext(
        tls_params=common_pb2.TlsParameters(
            tls_minimum_protocol_version=common_pb2.TlsParameters.TLSv1_2,
            tls_maximum_protocol_version=common_pb2.TlsParameters.TLSv1_3,
        ),
    )
    common.validation_context.trusted_ca.CopyFrom(base_pb2.DataSource(filename=system_ca))
    common.validation_context.match_typed_subject_alt_names.add(
        san_type=san_type, matcher=string_pb2.StringMatcher(exact=endpoint.host)
    )
    return tls_pb2.UpstreamTlsContext(common_tls_context=common, sni="" if endpoint.host_is_ip else endpoint.host)
