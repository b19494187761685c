"""Every Envoy resource name malla generates: format and parse side by side.

The names are Istio's, so that an Istio user reading ``malla proxy-config``
sees what ``istioctl proxy-config`` would show:

- clusters: ``outbound|9080|v2|reviews.default.svc.cluster.local``,
  ``inbound|9080||``, and the fixed ``PassthroughCluster``,
  ``BlackHoleCluster``, ``InboundPassthroughCluster``;
- the SNI a client sends for Istio mTLS: ``outbound_.9080_.v2_.reviews.default.svc.cluster.local``;
- listeners: ``0.0.0.0_9080`` (address_port), ``virtualOutbound``, ``virtualInbound``;
- route configurations: ``9080`` (outbound HTTP by port), ``http.8080`` and
  ``https.443.https.bookinfo-gateway.default`` (gateways), and for inbound
  HTTP the inbound cluster name;
- secrets: ``default`` (the workload certificate), ``ROOTCA`` (the mesh CA),
  ``kubernetes://NAME`` and ``kubernetes://NAME-cacert`` (gateway credentials).

Parse functions raise ``ValueError`` naming the text and the expected form.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass


class Direction(enum.StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


PASSTHROUGH_CLUSTER = "PassthroughCluster"
BLACKHOLE_CLUSTER = "BlackHoleCluster"
INBOUND_PASSTHROUGH_CLUSTER = "InboundPassthroughCluster"

VIRTUAL_OUTBOUND_LISTENER = "virtualOutbound"
VIRTUAL_INBOUND_LISTENER = "virtualInbound"

# Route configuration Istio names for traffic nothing else matched.
ALLOW_ANY_VIRTUAL_HOST = "allow_any"
BLOCK_ALL_VIRTUAL_HOST = "block_all"

WORKLOAD_CERT_SECRET = "default"
ROOT_CA_SECRET = "ROOTCA"
CREDENTIAL_PREFIX = "kubernetes://"
CA_CERT_SUFFIX = "-cacert"


# --- clusters -----------------------------------------------------------------


@dataclass(frozen=True)
class ClusterKey:
    """The parts of an Istio cluster name (subset and host are '' when absent)."""

    direction: Direction
    port: int
    subset: str = ""
    host: str = ""

    def __str__(self) -> str:
        return format_cluster_name(self.direction, port=self.port, subset=self.subset, host=self.host)


def format_cluster_name(direction: Direction | str, *, port: int, subset: str = "", host: str = "") -> str:
    """``outbound|9080|v2|reviews.default.svc.cluster.local``; ``inbound|9080||``."""
    return f"{Direction(direction)}|{port}|{subset}|{host}"


def outbound_cluster_name(host: str, port: int, subset: str = "") -> str:
    return format_cluster_name(Direction.OUTBOUND, port=port, subset=subset, host=host)


def inbound_cluster_name(port: int) -> str:
    return format_cluster_name(Direction.INBOUND, port=port)


def format_sni(direction: Direction | str, *, port: int, subset: str = "", host: str = "") -> str:
    """The DNS-safe form Istio sends as SNI: ``outbound_.9080_.v2_.reviews.default.svc.cluster.local``."""
    return f"{Direction(direction)}_.{port}_.{subset}_.{host}"


def parse_cluster_name(name: str) -> ClusterKey:
    """Inverse of :func:`format_cluster_name`; accepts the SNI form of :func:`format_sni` too."""
    parts = name.split("|")
    if len(parts) != 4:
        parts = name.split("_.", 3)
    if len(parts) != 4:
        raise ValueError(
            f"{name!r} is not an Istio cluster name: expected DIRECTION|PORT|SUBSET|HOST "
            "such as 'outbound|9080|v2|reviews.default.svc.cluster.local'"
        )
    direction, port, subset, host = parts
    if direction not in (Direction.INBOUND, Direction.OUTBOUND):
        raise ValueError(f"{name!r}: direction {direction!r} is not 'inbound' or 'outbound'")
    return ClusterKey(Direction(direction), _port(port, name), subset, host)


@functools.lru_cache(maxsize=1 << 16)
def host_of_cluster(name: str) -> str:
    """The host of ``outbound|PORT|SUBSET|HOST``; "" for any other name (remembered: pushes ask often)."""
    try:
        return parse_cluster_name(name).host
    except ValueError:
        return ""


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise ValueError(f"{whole!r}: {text!r} is not a port number (0-65535)")
    return int(text)


# --- listeners ----------------------------------------------------------------


def listener_name(address: str, port: int) -> str:
    """``0.0.0.0_9080``: Istio names listeners after what they bind."""
    return f"{address}_{port}"


def parse_listener_name(name: str) -> tuple[str, int]:
    """``'0.0.0.0_9080'`` -> ``('0.0.0.0', 9080)``."""
    address, sep, port = name.rpartition("_")
    if not sep or not address:
        raise ValueError(f"{name!r} is not a listener name: expected ADDRESS_PORT such as '0.0.0.0_9080'")
    return address, _port(port, name)


# --- route configurations -------------------------------------------------------


def outbound_route_name(port: int) -> str:
    """A sidecar's outbound HTTP routes for one port: ``'9080'``."""
    return str(port)


def gateway_http_route_name(port: int) -> str:
    """A gateway's plain-HTTP routes for one port: ``'http.8080'``."""
    return f"http.{port}"


def gateway_https_route_name(port: int, *, port_name: str, gateway: str, namespace: str) -> str:
    """A gateway server terminating TLS: ``'https.443.https.bookinfo-gateway.default'``."""
    return f"https.{port}.{port_name}.{gateway}.{namespace}"


@dataclass(frozen=True)
class RouteKey:
    """What a route configuration name says: kind 'outbound', 'inbound', 'http' or 'https'."""

    kind: str
    port: int
    port_name: str = ""
    gateway: str = ""
    namespace: str = ""


def parse_route_name(name: str) -> RouteKey:
    """Inverse of the ``*_route_name`` functions and of :func:`inbound_cluster_name`."""
    if name.isdigit():
        return RouteKey("outbound", _port(name, name))
    if name.startswith("inbound|"):
        return RouteKey("inbound", parse_cluster_name(name).port)
    kind, _, rest = name.partition(".")
    if kind == "http" and rest.isdigit():
        return RouteKey("http", _port(rest, name))
    if kind == "https":
        parts = rest.split(".", 3)
        if len(parts) == 4:
            port, port_name, gateway, namespace = parts
            return RouteKey("https", _port(port, name), port_name, gateway, namespace)
    raise ValueError(
        f"{name!r} is not a route configuration name: expected a port ('9080'), 'http.PORT', "
        "'https.PORT.PORTNAME.GATEWAY.NAMESPACE' or an inbound cluster name"
    )


# --- secrets ------------------------------------------------------------------


def credential_secret_name(credential_name: str) -> str:
    """A gateway's ``credentialName`` as the SDS secret name Istio uses."""
    return f"{CREDENTIAL_PREFIX}{credential_name}"


def credential_ca_secret_name(credential_name: str) -> str:
    """The CA half of a credential (MUTUAL gateway servers, DestinationRule credentialName)."""
    return f"{CREDENTIAL_PREFIX}{credential_name}{CA_CERT_SUFFIX}"


def parse_secret_name(name: str) -> tuple[str, bool]:
    """``'kubernetes://cert-cacert'`` -> ``('cert', True)``; mesh secrets come back unchanged."""
    if not name.startswith(CREDENTIAL_PREFIX):
        if name in (WORKLOAD_CERT_SECRET, ROOT_CA_SECRET):
            return name, name == ROOT_CA_SECRET
        raise ValueError(
            f"{name!r} is not a secret name malla serves: expected 'default', 'ROOTCA' or 'kubernetes://NAME'"
        )
    credential = name.removeprefix(CREDENTIAL_PREFIX)
    if credential.endswith(CA_CERT_SUFFIX):
        return credential.removesuffix(CA_CERT_SUFFIX), True
    return credential, False
