"""Loopback addresses for workloads on this host: one per workload, so ports never clash.

Linux routes all of 127.0.0.0/8 to ``lo``; each workload's sidecar binds its
inbound ports and its outbound proxy port on its own address (127.0.1.1,
127.0.1.2, ...). The control plane hands them out, so two agents never pick
the same one; a lease ends when its agent releases it or leaves the mesh.

Other control planes on the same host (another home, a test run) hand out
the same range, and Envoy binds its listeners with SO_REUSEPORT, so two
sidecars on one address would silently share traffic. Two checks keep an
address to one mesh: a lease holds a host-wide lock (an abstract Unix
socket named after the address, gone when the control plane is), and an
address whose sidecar port is bound already (a workload that outlived its
control plane) is skipped.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import threading

FIRST = ipaddress.IPv4Address("127.0.1.1")
LAST = ipaddress.IPv4Address("127.0.255.254")
SIDECAR_PORT = 15001  # every sidecar binds its outbound proxy listener here (MeshConfig.outbound_port)


class AddressPool:
    def __init__(
        self,
        *,
        first: ipaddress.IPv4Address = FIRST,
        last: ipaddress.IPv4Address = LAST,
        probe_port: int | None = SIDECAR_PORT,
    ) -> None:
        self._first, self._last = int(first), int(last)
        self._probe_port = probe_port
        self._leases: dict[str, str] = {}  # address -> owner
        self._locks: dict[str, socket.socket] = {}  # address -> its host-wide lock
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
                if candidate in self._leases or self._bound(candidate):
                    continue
                free, lock = _host_lock(candidate)
                if not free:
                    continue
                self._leases[candidate] = owner
                if lock is not None:
                    self._locks[candidate] = lock
                return candidate
        raise RuntimeError("no free loopback address left for a workload")

    def assign(self, address: str, owner: str) -> None:
        """Hand a leased address to a new owner (the node id, once it is known)."""
        with self._lock:
            self._leases[address] = owner

    def release(self, address: str) -> bool:
        with self._lock:
            return self._drop(address)

    def release_owner(self, owner: str) -> None:
        with self._lock:
            for addr in [a for a, who in self._leases.items() if who == owner]:
                self._drop(addr)

    def leases(self) -> dict[str, str]:
        with self._lock:
            return dict(self._leases)

    def close(self) -> None:
        """Give every lease back (the control plane stops)."""
        with self._lock:
            for addr in list(self._leases):
                self._drop(addr)

    def _drop(self, address: str) -> bool:
        lock = self._locks.pop(address, None)
        if lock is not None:
            lock.close()
        return self._leases.pop(address, None) is not None

    def _bound(self, address: str) -> bool:
        """Is a sidecar (of any mesh) listening on this address already?"""
        if self._probe_port is None:
            return False
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((address, self._probe_port))
            except OSError:
                return True
        return False


def _host_lock(address: str) -> tuple[bool, socket.socket | None]:
    """Hold ``address`` host-wide: (False, None) if another process holds it, else (True, the lock or None)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(f"\0malla/workload-address/{address}")
    except OSError as exc:
        sock.close()
        # Anything but EADDRINUSE means no abstract namespace (not Linux): the probe is the only check.
        return exc.errno != errno.EADDRINUSE, None
    return True, sock
