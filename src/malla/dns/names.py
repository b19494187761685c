"""A name, seen from a namespace, resolved against the mesh: pure, no I/O.

``resolve_name(snapshot, name, namespace=...)`` says one of three things:

- ``MESH`` with the addresses to answer: the service's own IPv4/IPv6
  addresses (cluster IP, ServiceEntry ``addresses``); else its VIP from
  ``malla.pilot.vips``, which the capture layout routes; else, for a
  headless or ``resolution: NONE`` service with endpoints, the endpoints;
- ``NXDOMAIN``: a name under the mesh domain (``cluster.local``) that no
  service has. Resolvers walk their search list (``reviews.default.default.svc.cluster.local``
  first) and these must fail fast instead of reaching the host's resolver;
- ``FORWARD``: not a mesh name (or a wildcard ServiceEntry's, whose hosts
  are real names): ask the host's resolver.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from malla.pilot.services import Resolution, Service
from malla.pilot.snapshot import MeshSnapshot
from malla.pilot.vips import auto_vips


class Outcome(enum.StrEnum):
    MESH = "mesh"
    NXDOMAIN = "nxdomain"
    FORWARD = "forward"


@dataclass(frozen=True)
class MeshAnswer:
    outcome: Outcome
    ipv4: tuple[str, ...] = ()
    ipv6: tuple[str, ...] = ()
    hostname: str = ""  # the service's host name, for MESH


FORWARD = MeshAnswer(Outcome.FORWARD)
NXDOMAIN = MeshAnswer(Outcome.NXDOMAIN)


def resolve_name(snapshot: MeshSnapshot, name: str, *, namespace: str) -> MeshAnswer:
    """What mesh DNS answers for ``name`` asked from a workload in ``namespace``."""
    name = name.lower().rstrip(".")
    if not name:
        return FORWARD
    registry = snapshot.registry
    service = registry.lookup(name, namespace=namespace)
    if service is not None and not service.hostname.startswith("*"):
        addresses = _addresses(snapshot, service)
        if addresses:
            return MeshAnswer(
                Outcome.MESH,
                ipv4=tuple(a for a in addresses if ipaddress.ip_address(a).version == 4),
                ipv6=tuple(a for a in addresses if ipaddress.ip_address(a).version == 6),
                hostname=service.hostname,
            )
    if service is None and _in_mesh_domain(name, snapshot.mesh.domain):
        return NXDOMAIN
    return FORWARD


def _addresses(snapshot: MeshSnapshot, service: Service) -> tuple[str, ...]:
    own = tuple(a for a in service.addresses if _is_ip(a))
    if own or service.addresses:
        return own  # CIDR-only addresses: the host's resolver knows the real name
    vip = _vips(snapshot).get(service.key)
    if vip is not None:
        return (vip,)
    if service.resolution is Resolution.PASSTHROUGH:
        found = {
            e.address
            for port in service.ports
            for e in snapshot.registry.endpoints_of(service, port.port)
            if _is_ip(e.address)
        }
        return tuple(sorted(found, key=lambda a: (ipaddress.ip_address(a).version, ipaddress.ip_address(a).packed)))
    return ()


@functools.lru_cache(maxsize=4)
def _vips(snapshot: MeshSnapshot) -> Mapping[tuple[str, str], str]:
    # Snapshots are immutable: one allocation per snapshot, not per query.
    return auto_vips(snapshot.registry.services)


def _in_mesh_domain(name: str, domain: str) -> bool:
    return name == domain or name.endswith("." + domain)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
