"""Virtual IPs for services that have no address of their own (Istio's DNS auto-allocation).

A Kubernetes Service has a cluster IP and a ServiceEntry may list
``addresses``; a workload-formed service (``malla run --name db``) or a
ServiceEntry without addresses has neither. Transparent capture routes
plain TCP by original destination, so such a service needs an address its
clients dial: mesh DNS answers it, and the capture layout gives it a
``VIP_PORT`` listener. Istio's agent allocates these from the class E range
240.240.0.0/16, which no real network routes.

The allocation is a pure function of the registry and is stable: each
service hashes to a slot, and only a collision (probed in host name order)
moves one. Adding or removing another service does not renumber the rest,
unlike Istio's sequential allocation, so an address a client cached stays
right.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from malla.pilot.services import Resolution, Service

VIP_NETWORK = ipaddress.IPv4Network("240.240.0.0/16")
_SLOTS = VIP_NETWORK.num_addresses - 2  # neither .0.0 nor .255.255


def needs_vip(service: Service) -> bool:
    """A service clients dial by name but that has no address: not a wildcard, not passthrough."""
    return (
        not service.addresses
        and not service.hostname.startswith("*")
        and service.resolution is not Resolution.PASSTHROUGH
    )


def auto_vips(services: Iterable[Service]) -> Mapping[tuple[str, str], str]:
    """``{(namespace, hostname): "240.240.x.y"}`` for every service that ``needs_vip``."""
    wanting = sorted((s.hostname, s.namespace) for s in services if needs_vip(s))
    taken: set[int] = set()
    out: dict[tuple[str, str], str] = {}
    for hostname, namespace in wanting:
        if len(taken) == _SLOTS:
            break  # the range is full: the rest keep wildcard listeners
        slot = _slot(hostname, namespace)
        while slot in taken:
            slot = (slot + 1) % _SLOTS
        taken.add(slot)
        out[(namespace, hostname)] = str(VIP_NETWORK.network_address + 1 + slot)
    return MappingProxyType(out)


def is_auto_vip(address: str) -> bool:
    try:
        return ipaddress.ip_address(address) in VIP_NETWORK
    except ValueError:
        return False


def _slot(hostname: str, namespace: str) -> int:
    digest = hashlib.sha256(f"{namespace}/{hostname}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % _SLOTS
