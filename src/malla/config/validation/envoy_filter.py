"""EnvoyFilter rules: Istio's webhook, its CRD schema and its EnvoyFilter analyzer.

Each config patch needs an ``applyTo``, a patch with an operation, and a
value unless it removes. The match must fit what is patched (listener-class
objects take a listener match, routes a route-configuration match, clusters
a cluster match; the waypoint match goes with context WAYPOINT only), and a
filter match names the filter it matches. The value is parsed as the Envoy
proto it patches (``Listener``, ``HttpFilter``, ``Cluster``, ...) with the
Envoy API protos, as istiod does: an unknown type is an error, an unknown
field a warning.

Beyond what Istio rejects, an operation that istiod silently ignores for the
patched object (``INSERT_BEFORE`` on a cluster, ``MERGE`` on an extension
config) is reported, as are relative operations without a ``priority``
(analyzer IST0151/IST0155).
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from google.protobuf import json_format

from malla.api.networking.envoy_filter import EnvoyConfigObjectMatch, EnvoyConfigObjectPatch, EnvoyFilter, ListenerMatch
from malla.config.validation import Finding, Findings, ValidationContext
from malla.config.validation.common import check_regex, join
from malla.config.validation.common_ports import check_port
from malla.config.validation.common_selectors import check_selection

HCM = "envoy.filters.network.http_connection_manager"

# What istiod does with each operation, per patched object (pilot/pkg/networking/core/envoyfilter).
_FILTER_OPS = {"MERGE", "MERGE_AND_REPLACE_LIST", "ADD", "REMOVE", "INSERT_BEFORE", "INSERT_AFTER", "INSERT_FIRST",
               "REPLACE"}
EFFECTIVE_OPS = {
    "LISTENER": {"MERGE", "MERGE_AND_REPLACE_LIST", "ADD", "REMOVE"},
    "FILTER_CHAIN": {"MERGE", "MERGE_AND_REPLACE_LIST", "ADD", "REMOVE"},
    "NETWORK_FILTER": _FILTER_OPS,
    "HTTP_FILTER": _FILTER_OPS,
    "LISTENER_FILTER": {"ADD", "REMOVE", "INSERT_BEFORE", "INSERT_AFTER", "INSERT_FIRST", "REPLACE"},
    "ROUTE_CONFIGURATION": {"MERGE", "MERGE_AND_REPLACE_LIST"},
    "VIRTUAL_HOST": {"MERGE", "MERGE_AND_REPLACE_LIST", "ADD", "REMOVE", "REPLACE"},
    "HTTP_ROUTE": {"MERGE", "MERGE_AND_REPLACE_LIST", "ADD", "REMOVE", "INSERT_BEFORE", "INSERT_AFTER",
                   "INSERT_FIRST"},
    "CLUSTER": {"MERGE", "MERGE_AND_REPLACE_LIST", "ADD", "REMOVE"},
    "EXTENSION_CONFIG": {"ADD", "REPLACE"},
    "BOOTSTRAP": {"MERGE", "MERGE_AND_REPLACE_LIST"},
}
_RELATIVE_OPS = {"REMOVE", "REPLACE", "INSERT_BEFORE", "INSERT_AFTER"}
_LISTENER_CLASS = {"LISTENER", "FILTER_CHAIN", "NETWORK_FILTER", "HTTP_FILTER"}
_ROUTE_CLASS = {"ROUTE_CONFIGURATION", "VIRTUAL_HOST", "HTTP_ROUTE"}
_OBJECT_TYPES = ("listener", "routeConfiguration", "cluster", "waypoint")

# Legacy filter names Envoy no longer knows, and their canonical names (Istio's xds.DeprecatedFilterNames).
DEPRECATED_FILTER_NAMES = {
    "envoy.buffer": "envoy.filters.http.buffer",
    "envoy.cors": "envoy.filters.http.cors",
    "envoy.csrf": "envoy.filters.http.csrf",
    "envoy.http_dynamo_filter": "envoy.filters.http.dynamo",
    "envoy.fault": "envoy.filters.http.fault",
    "envoy.grpc_http1_bridge": "envoy.filters.http.grpc_http1_bridge",
    "envoy.grpc_json_transcoder": "envoy.filters.http.grpc_json_transcoder",
    "envoy.grpc_web": "envoy.filters.http.grpc_web",
    "envoy.gzip": "envoy.filters.http.gzip",
    "envoy.health_check": "envoy.filters.http.health_check",
    "envoy.ip_tagging": "envoy.filters.http.ip_tagging",
    "envoy.lua": "envoy.filters.http.lua",
    "envoy.rate_limit": "envoy.filters.http.ratelimit",
    "envoy.router": "envoy.filters.http.router",
    "envoy.squash": "envoy.filters.http.squash",
    "envoy.listener.http_inspector": "envoy.filters.listener.http_inspector",
    "envoy.listener.original_dst": "envoy.filters.listener.original_dst",
    "envoy.listener.original_src": "envoy.filters.listener.original_src",
    "envoy.listener.proxy_protocol": "envoy.filters.listener.proxy_protocol",
    "envoy.listener.tls_inspector": "envoy.filters.listener.tls_inspector",
    "envoy.client_ssl_auth": "envoy.filters.network.client_ssl_auth",
    "envoy.ext_authz": "envoy.filters.http.ext_authz (HTTP) or envoy.filters.network.ext_authz (network)",
    "envoy.http_connection_manager": HCM,
    "envoy.mongo_proxy": "envoy.filters.network.mongo_proxy",
    "envoy.ratelimit": "envoy.filters.network.ratelimit",
    "envoy.redis_proxy": "envoy.filters.network.redis_proxy",
    "envoy.tcp_proxy": "envoy.filters.network.tcp_proxy",
}

# Kinds Istio accepts that malla's translation does not patch (malla.pilot.envoy_filters skips them).
NOT_APPLIED = ("EXTENSION_CONFIG", "BOOTSTRAP", "LISTENER_FILTER")
# The Envoy message each applyTo patches: (module, message).
PATCHED_TYPES = {
    "LISTENER": ("envoy.config.listener.v3.listener_pb2", "Listener"),
    "FILTER_CHAIN": ("envoy.config.listener.v3.listener_components_pb2", "FilterChain"),
    "NETWORK_FILTER": ("envoy.config.listener.v3.listener_components_pb2", "Filter"),
    "LISTENER_FILTER": ("envoy.config.listener.v3.listener_components_pb2", "ListenerFilter"),
    "HTTP_FILTER": ("envoy.extensions.filters.network.http_connection_manager.v3.http_connection_manager_pb2",
                    "HttpFilter"),
    "ROUTE_CONFIGURATION": ("envoy.config.route.v3.route_pb2", "RouteConfiguration"),
    "VIRTUAL_HOST": ("envoy.config.route.v3.route_components_pb2", "VirtualHost"),
    "HTTP_ROUTE": ("envoy.config.route.v3.route_components_pb2", "Route"),
    "CLUSTER": ("envoy.config.cluster.v3.cluster_pb2", "Cluster"),
    "EXTENSION_CONFIG": ("envoy.config.core.v3.extension_pb2", "TypedExtensionConfig"),
    "BOOTSTRAP": ("envoy.config.bootstrap.v3.bootstrap_pb2", "Bootstrap"),
}
# Packages a type URL may load protos from: Envoy's v3-and-later API (Envoy dropped v2), xds and udpa.
_LOADABLE_PACKAGE = re.compile(r"^(?:envoy(?:\.[a-z0-9_]+)*\.v(?:[3-9]|\d\d)[a-z0-9]*|(?:udpa|xds)(?:\.[a-z0-9_]+)+)$")


# --- patch values, parsed as the Envoy protos they patch ----------------------


@lru_cache(maxsize=None)
def _load_package(package: str) -> bool:
    """Import every generated module of one proto package, so its messages can be named in '@type'."""
    if not _LOADABLE_PACKAGE.match(package):
        return False
    try:
        module = importlib.import_module(package)
    except ImportError:
        return False
    for info in pkgutil.iter_modules(getattr(module, "__path__", [])):
        if info.name.endswith("_pb2"):
            try:
                importlib.import_module(f"{package}.{info.name}")
            except (ImportError, TypeError):
                # A module that cannot load leaves its types unknown, which is reported as such.
                continue
    return True


def _type_urls(value: Any) -> Iterable[str]:
    if isinstance(value, dict):
        url = value.get("@type")
        if isinstance(url, str):
            yield url
        for item in value.values():
            yield from _type_urls(item)
    elif isinstance(value, list):
        for item in value:
            yield from _type_urls(item)


def _load_types(value: Any) -> None:
    for url in set(_type_urls(value)):
        full_name = url.rsplit("/", 1)[-1]
        package = ".".join(p for p in full_name.split(".") if p[:1].islower())
        _load_package(package)


load_types = _load_types  # translation (malla.pilot.envoy_filters_values) parses values the same way


def _missing_typed_config(message: Any) -> list[str]:
    """Names of filters configured by name alone, where Envoy wants a typed_config (Istio warns)."""
    fields = {f.json_name for f in message.DESCRIPTOR.fields}
    found: list[str] = []
    has_typed = False
    for field, value in message.ListFields():
        if field.json_name in ("typedConfig", "configDiscovery"):
            has_typed = True
        elif field.message_type is not None and not field.is_repeated:
            found += _missing_typed_config(value)
    if "typedConfig" in fields and not has_typed:
        found.append(getattr(message, "name", "") if "name" in fields else "")
    return found


def _parse_error(exc: Exception) -> str:
    text = str(exc).split("\n", 1)[0]
    if "Can not find message descriptor by type_url" in text:
        url = text.split("type_url:", 1)[-1].split(" at ", 1)[0].strip()
        hint = " (Envoy's v2 API is gone: use the v3 type)" if ".v2" in url else ""
        return f"referenced type unknown: {url}{hint}"
    return text


def check_patch_value(apply_to: str, value: dict[str, Any], path: str, f: Findings) -> None:
    """Parse the value as the Envoy message it patches: leniently for errors, strictly for warnings."""
    module, name = PATCHED_TYPES[apply_to]
    message_type = getattr(importlib.import_module(module), name)
    # YAML loaders hand over subclasses of dict/str/float; protobuf wants plain JSON values.
    plain = json.loads(json.dumps(value, default=str))
    _load_types(plain)
    kind = message_type.DESCRIPTOR.full_name
    try:
        message = json_format.ParseDict(plain, message_type(), ignore_unknown_fields=True)
    except (json_format.ParseError, TypeError, ValueError, RecursionError) as exc:
        f.error(path, f"value is not a valid {kind}: {_parse_error(exc)}")
        return
    try:
        json_format.ParseDict(plain, message_type())
    except (json_format.ParseError, TypeError, ValueError, RecursionError) as exc:
        f.warning(path, f"value has parts {kind} does not know, which are ignored: {_parse_error(exc)}")
    missing = [n or "(unnamed)" for n in _missing_typed_config(message)]
    if missing:
        f.warning(path, f"filters configured by name without typed_config: {', '.join(missing)}; give each a "
                  "typed_config with its '@type'")


# --- matches -------------------------------------------------------------------


def _check_port_number(number: int | None, path: str, f: Findings) -> None:
    if number:
        problem = check_port(number)
        if problem:
            f.error(path, f"{problem} (0 or unset matches every port)")


def _check_filter_names(listener: ListenerMatch, apply_to: str, path: str, f: Findings) -> None:
    chain = listener.filter_chain
    if chain is None or chain.filter is None:
        return
    fpath = join(path, "filterChain", "filter")
    match = chain.filter
    if apply_to in ("LISTENER", "FILTER_CHAIN"):
        f.warning(fpath, f"a filter match has no effect with applyTo {apply_to}: it selects by listener or "
                  "filter chain only")
    if not match.name:
        f.error(join(fpath, "name"), "a filter match needs the name of the filter, such as " + HCM)
        return
    for name, where in ((match.name, "name"), (match.sub_filter.name if match.sub_filter else None, "subFilter.name")):
        if name in DEPRECATED_FILTER_NAMES:
            f.warning(join(fpath, where), f"deprecated filter name {name!r}: use {DEPRECATED_FILTER_NAMES[name]!r}")
    if match.sub_filter is None:
        return
    if apply_to != "HTTP_FILTER":
        f.error(join(fpath, "subFilter"), f"a subFilter match works with applyTo HTTP_FILTER only, not {apply_to}")
    elif match.name not in (HCM, "envoy.http_connection_manager"):
        f.error(join(fpath, "name"), f"a subFilter match needs the filter match to name {HCM}, not {match.name!r}")
    elif not match.sub_filter.name:
        f.error(join(fpath, "subFilter", "name"), "a subFilter match needs the name of the HTTP filter, such as "
                "envoy.filters.http.router")


def _check_object_type(match: EnvoyConfigObjectMatch, apply_to: str, path: str, f: Findings) -> None:
    present = [n for n, v in zip(_OBJECT_TYPES, (match.listener, match.route_configuration, match.cluster,
                                                 match.waypoint)) if v is not None]
    if len(present) > 1:
        f.error(path, f"a match takes only one of {', '.join(_OBJECT_TYPES)}; found {', '.join(present)}")
    if (match.context == "WAYPOINT") != (match.waypoint is not None):
        f.error(join(path, "waypoint"), "match.waypoint goes with context WAYPOINT, and context WAYPOINT needs it")
    expected = ("listener" if apply_to in _LISTENER_CLASS else "routeConfiguration" if apply_to in _ROUTE_CLASS
                else "cluster" if apply_to == "CLUSTER" else None)
    wrong = [n for n in present if n not in (expected, "waypoint")]
    if expected and wrong:
        f.error(join(path, wrong[0]), f"applyTo {apply_to} patches {expected}-class objects: match on "
                f"{expected}, not {wrong[0]}")


def _check_match(match: EnvoyConfigObjectMatch, apply_to: str, path: str, f: Findings) -> None:
    _check_object_type(match, apply_to, path, f)
    if match.proxy is not None and match.proxy.proxy_version:
        problem = check_regex(match.proxy.proxy_version)
        if problem:
            f.error(join(path, "proxy", "proxyVersion"), problem)
    if match.listener is not None:
        lpath = join(path, "listener")
        _check_port_number(match.listener.port_number, join(lpath, "portNumber"), f)
        if match.listener.filter_chain is not None:
            _check_port_number(match.listener.filter_chain.destination_port,
                               join(lpath, "filterChain", "destinationPort"), f)
        _check_filter_names(match.listener, apply_to, lpath, f)
    if match.route_configuration is not None:
        _check_port_number(match.route_configuration.port_number, join(path, "routeConfiguration", "portNumber"), f)
    if match.cluster is not None:
        _check_port_number(match.cluster.port_number, join(path, "cluster", "portNumber"), f)
    if match.waypoint is not None:
        _check_port_number(match.waypoint.port_number, join(path, "waypoint", "portNumber"), f)


# --- patches -------------------------------------------------------------------


def _analyzer_code(apply_to: str, operation: str) -> str | None:
    """The misuses Istio's analyzer reports as errors: REPLACE outside filters, ADD/REMOVE on a route config."""
    if operation == "REPLACE":
        return "IST0152"
    if apply_to == "ROUTE_CONFIGURATION" and operation in ("ADD", "REMOVE"):
        return "IST0153" if operation == "ADD" else "IST0154"
    return None


def _check_operation(apply_to: str, operation: str, path: str, f: Findings) -> bool:
    """Whether the operation takes effect on this object; reports it when it does not."""
    allowed = EFFECTIVE_OPS[apply_to]
    if operation in allowed:
        return True
    message = (f"operation {operation} has no effect with applyTo {apply_to}: istiod ignores it; use one of "
               f"{', '.join(sorted(allowed))}")
    code = _analyzer_code(apply_to, operation)
    if code:
        f.error(path, f"{message} ({code})")
    else:
        f.warning(path, message)
    return False


def _instance_name(cp: EnvoyConfigObjectPatch) -> str:
    """The filter a patch is about, as Istio's analyzer names it: the value's name, else the matched filter."""
    value = cp.patch.value if cp.patch else None
    if isinstance(value, dict) and "name" in value:
        return str(value["name"])
    listener = cp.match.listener if cp.match else None
    chain = listener.filter_chain if listener else None
    return chain.filter.name or "" if chain and chain.filter else ""


def _check_relative(cp: EnvoyConfigObjectPatch, path: str, versioned: set[str], f: Findings) -> None:
    name = _instance_name(cp)
    if name in versioned:
        f.warning(path, f"operation {cp.patch.operation} is relative to other filters and this EnvoyFilter has no "
                  "priority, while another patch of the same filter matches on proxyVersion: during an upgrade "
                  "the patch may not apply; use INSERT_FIRST or ADD, or set a priority (IST0155)")
    else:
        f.warning(path, f"operation {cp.patch.operation} is relative to other filters and this EnvoyFilter has no "
                  "priority: it may not be applied; use INSERT_FIRST or ADD, or set a priority (IST0151)")


def _check_patch_fields(cp: EnvoyConfigObjectPatch, apply_to: str, path: str, f: Findings) -> bool:
    """The webhook's required fields; False when the patch is too incomplete to check further."""
    patch = cp.patch
    if patch is None:
        f.error(join(path, "patch"), "patch is required: the operation and the value to apply")
        return False
    if patch.operation in (None, "INVALID"):
        f.error(join(path, "patch", "operation"), "patch.operation is required: one of MERGE, ADD, REMOVE, "
                "INSERT_BEFORE, INSERT_AFTER, INSERT_FIRST, REPLACE, MERGE_AND_REPLACE_LIST")
        return False
    if patch.operation == "REMOVE":
        if patch.value:
            f.warning(join(path, "patch", "value"), "a REMOVE patch takes no value: it is ignored")
    elif patch.value is None:
        f.error(join(path, "patch", "value"), f"patch.value is required for operation {patch.operation}: the Envoy "
                f"config to {patch.operation.lower().replace('_', ' ')}")
        return False
    if patch.filter_class not in (None, "UNSPECIFIED") and (apply_to != "HTTP_FILTER" or patch.operation != "ADD"):
        f.warning(join(path, "patch", "filterClass"), "filterClass takes effect only with applyTo HTTP_FILTER and "
                  "operation ADD: it is ignored here")
    return True


def _check_config_patch(cp: EnvoyConfigObjectPatch, path: str, spec: EnvoyFilter, versioned: set[str],
                        f: Findings) -> None:
    apply_to = cp.apply_to
    if apply_to in (None, "INVALID"):
        f.error(join(path, "applyTo"), f"applyTo is required: one of {', '.join(PATCHED_TYPES)}")
        return
    if not _check_patch_fields(cp, apply_to, path, f):
        return
    if apply_to in NOT_APPLIED:
        f.warning(join(path, "applyTo"), f"applyTo {apply_to} is not applied by malla: this patch is ignored "
                  f"(malla applies {', '.join(t for t in PATCHED_TYPES if t not in NOT_APPLIED)})")
    if cp.match is not None:
        _check_match(cp.match, apply_to, join(path, "match"), f)
    operation = cp.patch.operation
    effective = _check_operation(apply_to, operation, join(path, "patch", "operation"), f)
    if effective and operation in _RELATIVE_OPS and not spec.priority:
        _check_relative(cp, join(path, "patch", "operation"), versioned, f)
    if cp.match is not None and cp.match.proxy is not None and cp.match.proxy.proxy_version:
        versioned.add(_instance_name(cp))
    if operation != "REMOVE" and cp.patch.value is not None:
        check_patch_value(apply_to, cp.patch.value, join(path, "patch", "value"), f)


def validate(spec: EnvoyFilter, ctx: ValidationContext) -> Iterable[Finding]:
    f = Findings()
    f.warning("spec", "EnvoyFilter exposes internal implementation details that may change at any time: prefer "
              "other APIs where possible, and take extreme care on upgrades")
    # Istio's webhook leaves targetRefs to the CRD schema, which takes any kind: unsupported kinds only warn.
    check_selection(
        f, selector=spec.workload_selector, target_refs=spec.target_refs, selector_field="workloadSelector",
        kinds_enforced=False,
    )
    if not spec.config_patches:
        f.warning("spec.configPatches", "no configPatches: this EnvoyFilter changes nothing")
    versioned: set[str] = set()
    for i, cp in enumerate(spec.config_patches):
        _check_config_patch(cp, join("spec.configPatches", i), spec, versioned, f)
    return f
