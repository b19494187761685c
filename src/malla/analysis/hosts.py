"""Host names as Istio's analyzers see them: short names, FQDNs, wildcards, exportTo scopes.

A short name (``reviews``) is relative to the namespace of the resource that
writes it and means ``reviews.<ns>.svc.<cluster domain>``; a name with a dot
or a leading ``*`` is taken as written. Visibility is a *scope*: ``*`` (all
namespaces) or one namespace name, as ``exportTo`` and the
``networking.istio.io/exportTo`` annotation give it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

DEFAULT_CLUSTER_DOMAIN = "cluster.local"
EXPORT_ALL = "*"
EXPORT_LOCAL = "."
MESH_GATEWAY = "mesh"
EXPORT_TO_ANNOTATION = "networking.istio.io/exportTo"


def is_wildcard(host: str) -> bool:
    return host.startswith("*")


def is_short_name(host: str) -> bool:
    return not is_wildcard(host) and "." not in host


def to_fqdn(host: str, namespace: str, *, cluster_domain: str = DEFAULT_CLUSTER_DOMAIN) -> str:
    """``reviews`` in ``default`` -> ``reviews.default.svc.cluster.local``; other forms unchanged."""
    if is_short_name(host):
        return f"{host}.{namespace}.svc.{cluster_domain}"
    return host


def service_fqdn(name: str, namespace: str, *, cluster_domain: str = DEFAULT_CLUSTER_DOMAIN) -> str:
    return f"{name}.{namespace}.svc.{cluster_domain}"


def split_service_fqdn(host: str, *, cluster_domain: str = DEFAULT_CLUSTER_DOMAIN) -> tuple[str, str] | None:
    """(name, namespace) of ``name.ns.svc.<domain>``, or None for any other form."""
    m = re.fullmatch(r"(.+)\.(.+)\.svc\." + re.escape(cluster_domain), host)
    return (m.group(1), m.group(2)) if m else None


def service_name_for_host(host: str, namespace: str, *, cluster_domain: str = DEFAULT_CLUSTER_DOMAIN) -> tuple[str, str]:
    """The (namespace, name) a destination host names, as Istio's analyzers resolve it.

    A Kubernetes FQDN gives its own namespace; anything else is taken as a
    name in ``namespace`` (so ``reviews`` and ``reviews.default.svc.cluster.local``
    written in ``default`` name the same thing).
    """
    parsed = split_service_fqdn(host, cluster_domain=cluster_domain)
    if parsed:
        return parsed[1], parsed[0]
    return namespace, host


def hosts_match(a: str, b: str) -> bool:
    """Istio's host.Name.Matches: equal, or one wildcard covers the other (either way round)."""
    aw, bw = is_wildcard(a), is_wildcard(b)
    if aw and bw:
        if len(a) < len(b):
            return b[1:].endswith(a[1:])
        return a[1:].endswith(b[1:])
    if aw:
        return b.endswith(a[1:])
    if bw:
        return a.endswith(b[1:])
    return a == b


def host_subset_of(a: str, b: str) -> bool:
    """Istio's host.Name.SubsetOf: every name ``a`` matches is also matched by ``b``."""
    aw, bw = is_wildcard(a), is_wildcard(b)
    if aw:
        return bw and a[1:].endswith(b[1:])
    if bw:
        return a.endswith(b[1:])
    return a == b


def names_for_namespace(hosts: Iterable[str], namespace: str) -> list[str]:
    """Gateway/Sidecar ``ns/host`` entries visible from ``namespace``, with the prefix stripped."""
    out: list[str] = []
    for host in hosts:
        if "/" in host:
            ns, _, name = host.partition("/")
            if ns not in (namespace, EXPORT_ALL):
                continue
            host = name
        out.append(host)
    return out


def export_scopes(export_to: Sequence[str], namespace: str) -> list[str]:
    """The scopes a resource's hosts are visible in: ``*`` or namespace names (``.`` resolved)."""
    if not export_to or EXPORT_ALL in export_to:
        return [EXPORT_ALL]
    scopes: list[str] = []
    for entry in export_to:
        scope = namespace if entry == EXPORT_LOCAL else entry
        if scope not in scopes:
            scopes.append(scope)
    return scopes


def annotation_scopes(annotation: str | None, namespace: str) -> list[str]:
    """Scopes from a Service's ``networking.istio.io/exportTo`` annotation ("" means everywhere)."""
    if not annotation:
        return [EXPORT_ALL]
    scopes: list[str] = []
    for entry in annotation.split(","):
        entry = entry.strip()
        scopes.append(namespace if entry == EXPORT_LOCAL else entry)
    return scopes
