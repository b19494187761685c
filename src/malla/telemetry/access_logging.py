"""Access logging from Istio's Telemetry API: which user access logs one side of a proxy writes (pure).

In: the Telemetry chain of a proxy (``policy.applicable_telemetries``, least
specific first) and the traffic side (CLIENT: a sidecar's outbound listeners
and every gateway listener; SERVER: a sidecar's inbound). Out: Envoy
``AccessLog`` messages, or None when no Telemetry in the chain has an
``accessLogging`` entry, so ``MeshConfig.access_log_path`` alone decides, as
before. A non-None result replaces that file log (Istio's Telemetry API
supersedes ``accessLogFile``), even when it is empty: ``disabled: true``.

Merging follows Istio's ``mergeLogs``: the providers in scope are those the
most specific level naming any provider names; entries without providers
inherit their parent's; an entry whose ``match.mode`` covers the side adds
its providers, or removes them when ``disabled``; a provider's filter is the
one of the last entry naming it.

Providers: malla's mesh config declares no ``extensionProviders`` and no
default access-log providers. Its one access-log provider is Istio's
default-install ``envoy``: a file log to /dev/stdout in Istio's default TEXT
format. The agent writes a sidecar's stdout to ``envoy.out`` in its working
directory (``<home>/workloads/<name>.<namespace>/``), a gateway's to its
own work directory. Other names configure nothing (validation warns).

TCP connections (every ``tcp_proxy``: sidecar TCP listeners and passthrough,
gateways' TCP and TLS passthrough) get the same logs under the same rules,
in the same format, as Istio does: HTTP-only fields print ``-`` (``%REQ(..)%``,
``%PROTOCOL%``, ``%ROUTE_NAME%``) and ``%RESPONSE_CODE%`` prints ``0``. Each
connection is logged once, when it closes: the ``tcp_proxy``'s flush on
connect and periodic flush exist for the agent's metrics log, so a
log-type filter keeps the file log to ``TcpConnectionEnd``. A CEL filter is
evaluated on TCP too: a TCP connection has no ``response.code`` (nor
request headers), reading it is an evaluation error, and Envoy's CEL filter
drops the entry on an error, so ``response.code >= 400`` and its negation
both log no TCP connection (checked with Envoy 1.40). CEL's ``||`` absorbs
an error when the other side is true: ``response.code >= 400 ||
connection.mtls`` logs failed requests and mTLS connections. Connection
attributes (``connection.mtls``, ``upstream.address``, ``source.address``...)
work on both.

The gRPC access log to the agent, which produces Istio's metrics, is not a
user access log: nothing here touches it.
"""

from __future__ import annotations

from collections.abc import MutableSequence, Sequence

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.data.accesslog.v3 import accesslog_pb2 as accesslog_data_pb2
from envoy.extensions.access_loggers.file.v3 import file_pb2
from envoy.extensions.access_loggers.filters.cel.v3 import cel_pb2

from malla.api.telemetry.telemetry import AccessLogging
from malla.pilot.proto_values import typed
from malla.telemetry.policy import AppliedTelemetry

ENVOY_PROVIDER = "envoy"
ACCESS_LOG_PROVIDERS = (ENVOY_PROVIDER,)
FILE_LOGGER = "envoy.access_loggers.file"
CEL_FILTER = "envoy.access_loggers.extension_filters.cel"
STDOUT = "/dev/stdout"
# Istio's default TEXT access-log format (istio.io "Envoy Access Logs", "Default access log format").
ISTIO_TEXT_FORMAT = (
    '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% '
    "%RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "
    '"%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% '
    '%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" '
    '"%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER_RAW% %UPSTREAM_LOCAL_ADDRESS% '
    "%DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n"
)


def access_log_providers(chain: Sequence[AppliedTelemetry], *, side: str) -> dict[str, str | None] | None:
    """Provider name -> CEL filter (None: log every request) for ``side``; None: no Telemetry says anything."""
    levels = [applied.spec.access_logging for applied in chain if applied.spec.access_logging]
    if not levels:
        return None
    in_scope: set[str] = set()
    filters: dict[str, str | None] = {}
    for entries in levels:
        named = {ref.name for entry in entries for ref in entry.providers if ref.name}
        for entry in entries:
            for ref in entry.providers:
                if ref.name:
                    filters[ref.name] = entry.filter.expression if entry.filter is not None else None
        if named:
            in_scope = named
    chosen: dict[str, str | None] = {}
    parent: list[str] = []
    for entries in levels:
        for entry in entries:
            names = [ref.name for ref in entry.providers if ref.name] or parent
            parent = names
            for name in names:
                if name not in in_scope or not _covers(entry, side):
                    continue
                if entry.disabled:
                    chosen.pop(name, None)
                else:
                    chosen[name] = filters.get(name)
    return dict(sorted(chosen.items()))


def build_access_logs(
    chain: Sequence[AppliedTelemetry], *, side: str, tcp: bool = False
) -> list[accesslog_pb2.AccessLog] | None:
    """The user access logs for ``side`` in provider-name order; None: leave MeshConfig's file log.

    ``tcp``: for a ``tcp_proxy`` rather than an HTTP connection manager.
    """
    providers = access_log_providers(chain, side=side)
    if providers is None:
        return None
    return [build_file_access_log(expression=expression, tcp=tcp)
            for name, expression in providers.items() if name.lower() == ENVOY_PROVIDER]


def build_file_access_log(*, expression: str | None, tcp: bool = False) -> accesslog_pb2.AccessLog:
    """Istio's ``envoy`` provider: TEXT lines on stdout, only for requests ``expression`` (CEL) accepts."""
    config = file_pb2.FileAccessLog(path=STDOUT)
    config.log_format.text_format_source.inline_string = ISTIO_TEXT_FORMAT
    out = accesslog_pb2.AccessLog(name=FILE_LOGGER, typed_config=typed(config))
    cel = None
    if expression:
        cel = accesslog_pb2.AccessLogFilter()
        cel.extension_filter.name = CEL_FILTER
        cel.extension_filter.typed_config.CopyFrom(typed(cel_pb2.ExpressionFilter(expression=expression)))
    if tcp:
        at_close = accesslog_pb2.AccessLogFilter()
        at_close.log_type_filter.types.append(accesslog_data_pb2.TcpConnectionEnd)
        if cel is None:
            out.filter.CopyFrom(at_close)
        else:
            out.filter.and_filter.filters.extend([at_close, cel])
    elif cel is not None:
        out.filter.CopyFrom(cel)
    return out


def replace_file_logs(
    access_log: MutableSequence[accesslog_pb2.AccessLog], logs: Sequence[accesslog_pb2.AccessLog]
) -> None:
    """Put ``logs`` in place of the file logs in ``access_log`` (an HCM's or a ``tcp_proxy``'s), keeping the rest.

    The Telemetry API replaces MeshConfig's file log; the agent's gRPC log (metrics) stays.
    """
    kept = [log for log in access_log if log.name != FILE_LOGGER]
    del access_log[:]
    access_log.extend([*kept, *logs])


def _covers(entry: AccessLogging, side: str) -> bool:
    mode = entry.match.mode if entry.match is not None else None
    return mode in (None, "CLIENT_AND_SERVER") or mode == side
