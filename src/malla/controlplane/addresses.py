"""Loopback addresses for workloads on this host: one per workload, so ports never clash.

Linux routes all of 127.0.0.0/8 to ``lo``; each workload's sidecar binds its
inbound ports and its outbound proxy port on its own address (127.0.1.1,
127.0.1.2, ...). The control plane hands them out, so two agents never pick
the same one; a lease ends when its agent releases it or leaves the mesh.
"""

from __future__ import annotations

import ipaddress
import threading

FIRST = ipaddress.IPv4Address("127.0.1.1")
LAST = ipaddress.IPv4Address("127.0.255.254")


class AddressPool:
    def __init__(self, *, first: ipaddress.IPv4Address = FIRST, last: ipaddress.IPv4Address = LAST) -> None:
        self._first, self._last = int(first), int(last)
        self._leases: dict[str, str] = {}  # address -> owner
        self._next = self._first
        self._lock = threading.Lock()

    def allocate(self, owner: str) -> str:
        """A free address for ``owner`` (the same one again if it already holds one)."""
        with self._lock:
            for addr, who in self._leases.items():
                if who == owner:
                    return addr
            size = self._last - self._first + 1
            for _ in range(size):
                candidate = str(ipaddress.IPv4Address(self._next))
                self._next = self._first if self._next >= self._last else self._next + 1
                if candidate not in self._leases:
                    self._leases[candidate] = owner
                    return candidate
        raise RuntimeError("no free loopback address left for a workload")

    def assign(self, address: str, owner: str) -> None:
        """Hand a leased address to a new owner (the node id, once it is known)."""
        with self._lock:
            self._leases[address] = owner

    def release(self, address: str) -> bool:
        with self._lock:
            return self._leases.pop(address, None) is not None

    def release_owner(self, owner: str) -> None:
        with self._lock:
            for addr in [a for a, who in self._leases.items() if who == owner]:
                del self._leases[addr]

    def leases(self) -> dict[str, str]:
        with self._lock:
            return dict(self._leases)
