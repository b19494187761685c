"""Mesh DNS over an empty mesh, for a test that runs it inside a network namespace of its own.

Prints the UDP/TCP port, serves until stdin closes.
"""

import sys

from malla.dns.server import MeshDnsServer
from malla.pilot.snapshot import MeshSnapshot

snapshot = MeshSnapshot.build()
server = MeshDnsServer(lambda: snapshot)
print(server.start(), flush=True)
sys.stdin.read()
server.stop()
