"""The values a Telemetry ``tagOverrides`` UPSERT may take, and their evaluation on one access-log entry (pure).

Istio evaluates a tag's ``value`` as a CEL expression inside Envoy, over
Envoy's attributes and the peers' metadata. malla computes its metrics in
the agent from gRPC access-log entries and has no CEL interpreter, so it
accepts the expressions whose data the entry carries, exactly as written
below, and refuses anything else by name (``parse`` raises
``UnsupportedExpression``; validation turns that into a warning on
``spec.metrics[i].overrides[j].tagOverrides[NAME].value``) rather than
compute a different value than Istio would:

* a string literal: ``'v1'`` or ``"v1"`` (Istio's examples quote strings in
  YAML as ``"'v1'"``);
* ``request.host``, ``request.method``, ``request.path`` (with the query),
  ``request.url_path`` (without), ``request.scheme``, ``request.protocol``,
  ``request.useragent``, ``request.referer``, ``request.id``,
  ``request.headers['NAME']`` (the proxy then logs that header);
* ``response.code``;
* ``source.address``/``source.port`` (the downstream peer),
  ``destination.address``/``destination.port`` (the address the downstream
  connected to, Envoy's meaning), ``upstream.address``/``upstream.port``;
* ``connection.mtls``, ``connection.requested_server_name``;
* ``xds.cluster_name``, ``xds.route_name``;
* ``upstream_peer.F`` (on the client side) and ``downstream_peer.F`` (on the
  server side), also spelled ``filter_state.upstream_peer.F``, with F one of
  ``app``, ``version``, ``service``, ``revision``, ``workload``,
  ``namespace``: Istio's peer-metadata fields, read from the peer labels
  malla already computes;
* any of these wrapped in ``string(...)``.

A value that is not there (a header the request lacked, a peer field on the
other side, ``request.*`` on a TCP connection) is ``unknown``, the word
Istio's metrics use for what is not known.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from envoy.data.accesslog.v3 import accesslog_pb2

Entry = accesslog_pb2.HTTPAccessLogEntry | accesslog_pb2.TCPAccessLogEntry
UNKNOWN = "unknown"
SUPPORTED_FORMS = (
    "a quoted string such as 'v1'; request.host, request.method, request.path, request.url_path, "
    "request.scheme, request.protocol, request.useragent, request.referer, request.id, "
    "request.headers['NAME']; response.code; source.address, source.port, destination.address, "
    "destination.port, upstream.address, upstream.port; connection.mtls, connection.requested_server_name; "
    "xds.cluster_name, xds.route_name; upstream_peer.F or downstream_peer.F with F one of app, version, "
    "service, revision, workload, namespace; or one of these inside string(...)"
)
_LITERAL = re.compile(r"""'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)\"""", re.DOTALL)
_STRING_CALL = re.compile(r"string\s*\(\s*(.*?)\s*\)", re.DOTALL)
_HEADER = re.compile(r"""request\.headers\s*\[\s*(?:'([^'\\]+)'|"([^"\\]+)")\s*\]""")
_PEER = re.compile(r"(?:filter_state\.)?(upstream_peer|downstream_peer)\.([a-z_]+)")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"'}
# Istio's peer fields -> the suffix of malla's standard label for that side.
PEER_FIELDS = {"app": "app", "version": "version", "service": "canonical_service",
               "revision": "canonical_revision", "workload": "workload", "namespace": "workload_namespace"}
_PROTOCOLS = {accesslog_pb2.HTTPAccessLogEntry.HTTP10: "HTTP/1.0", accesslog_pb2.HTTPAccessLogEntry.HTTP11: "HTTP/1.1",
              accesslog_pb2.HTTPAccessLogEntry.HTTP2: "HTTP/2", accesslog_pb2.HTTPAccessLogEntry.HTTP3: "HTTP/3"}


class UnsupportedExpression(ValueError):
    """A tag value malla cannot compute from an access-log entry; the message lists what it can."""


@dataclass(frozen=True)
class Expression:
    """One parsed tag value: ``evaluate(entry, labels)`` gives the label's value for that entry."""

    source: str
    kind: str  # "literal", "attribute", "header", "peer"
    arg: str = ""
    side: str = ""  # for "peer": "upstream_peer" or "downstream_peer"

    @property
    def header(self) -> str | None:
        """The request header this value reads, which the proxy must log."""
        return self.arg if self.kind == "header" else None

    def evaluate(self, entry: Entry, labels: Mapping[str, str]) -> str:
        if self.kind == "literal":
            return self.arg
        if self.kind == "peer":
            value = _peer(self.side, self.arg, labels)
        elif self.kind == "header":
            value = _request(entry).request_headers.get(self.arg, "") if _is_http(entry) else ""
        else:
            value = _ATTRIBUTES[self.arg](entry)
        return value or UNKNOWN


def parse(value: str) -> Expression:
    """The expression ``value`` stands for; ``UnsupportedExpression`` naming what is allowed otherwise."""
    text = value.strip()
    call = _STRING_CALL.fullmatch(text)
    inner = call.group(1) if call else text
    literal = _LITERAL.fullmatch(inner)
    if literal:
        raw = literal.group(1) if literal.group(1) is not None else literal.group(2)
        return Expression(value, "literal", _unescape(raw))
    header = _HEADER.fullmatch(inner)
    if header:
        return Expression(value, "header", (header.group(1) or header.group(2)).lower())
    peer = _PEER.fullmatch(inner)
    if peer and peer.group(2) in PEER_FIELDS:
        return Expression(value, "peer", peer.group(2), side=peer.group(1))
    if inner in _ATTRIBUTES:
        return Expression(value, "attribute", inner)
    raise UnsupportedExpression(
        f"{value!r} is not an expression malla can compute from Envoy's access log (it has no CEL "
        f"interpreter); use {SUPPORTED_FORMS}"
    )


def problem(value: str) -> str | None:
    """Why ``value`` cannot be used, or None when it can."""
    try:
        parse(value)
    except UnsupportedExpression as exc:
        return str(exc)
    return None


def _unescape(raw: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), raw)


def _is_http(entry: Entry) -> bool:
    return isinstance(entry, accesslog_pb2.HTTPAccessLogEntry)


def _request(entry: Entry) -> accesslog_pb2.HTTPRequestProperties:
    return entry.request if isinstance(entry, accesslog_pb2.HTTPAccessLogEntry) else accesslog_pb2.HTTPRequestProperties()


def _peer(side: str, field: str, labels: Mapping[str, str]) -> str:
    # Istio knows the upstream peer only where this proxy is the client, the downstream one where it is the server.
    reporter = labels.get("reporter", "")
    if (side == "upstream_peer") != (reporter == "source"):
        return ""
    prefix = "destination" if side == "upstream_peer" else "source"
    value = labels.get(f"{prefix}_{PEER_FIELDS[field]}", "")
    return "" if value == UNKNOWN else value


def _address(pick: Callable[[accesslog_pb2.AccessLogCommon], object], part: str) -> Callable[[Entry], str]:
    def read(entry: Entry) -> str:
        address = pick(entry.common_properties).socket_address  # type: ignore[attr-defined]
        if part == "address":
            return str(address.address)
        return str(address.port_value) if address.port_value else ""

    return read


def _method(entry: Entry) -> str:
    method = _request(entry).request_method
    return accesslog_pb2.HTTPRequestProperties.DESCRIPTOR.fields_by_name["request_method"].enum_type.values_by_number[
        method].name if method else ""


def _mtls(entry: Entry) -> str:
    peer = entry.common_properties.tls_properties.peer_certificate_properties
    return "true" if (peer.subject or len(peer.subject_alt_name)) else "false"


def _response_code(entry: Entry) -> str:
    if not isinstance(entry, accesslog_pb2.HTTPAccessLogEntry) or not entry.response.HasField("response_code"):
        return ""
    return str(entry.response.response_code.value)


def _protocol(entry: Entry) -> str:
    return _PROTOCOLS.get(entry.protocol_version, "") if isinstance(entry, accesslog_pb2.HTTPAccessLogEntry) else ""


_ATTRIBUTES: dict[str, Callable[[Entry], str]] = {
    "request.host": lambda e: _request(e).authority,
    "request.method": _method,
    "request.path": lambda e: _request(e).path,
    "request.url_path": lambda e: _request(e).path.split("?", 1)[0],
    "request.scheme": lambda e: _request(e).scheme,
    "request.protocol": _protocol,
    "request.useragent": lambda e: _request(e).user_agent,
    "request.referer": lambda e: _request(e).referer,
    "request.id": lambda e: _request(e).request_id,
    "response.code": _response_code,
    "source.address": _address(lambda c: c.downstream_remote_address, "address"),
    "source.port": _address(lambda c: c.downstream_remote_address, "port"),
    "destination.address": _address(lambda c: c.downstream_local_address, "address"),
    "destination.port": _address(lambda c: c.downstream_local_address, "port"),
    "upstream.address": _address(lambda c: c.upstream_remote_address, "address"),
    "upstream.port": _address(lambda c: c.upstream_remote_address, "port"),
    "connection.mtls": _mtls,
    "connection.requested_server_name": lambda e: e.common_properties.tls_properties.tls_sni_hostname,
    "xds.cluster_name": lambda e: e.common_properties.upstream_cluster,
    "xds.route_name": lambda e: e.common_properties.route_name,
}
