"""Istio YAML for the benchmark meshes: S services of 4 endpoints each, written into a config directory.

Services are ServiceEntries (STATIC resolution, an HTTP port 8080, four
loopback endpoints each), one file per service so that changing one
service's endpoints is a one-file change, as ``malla up --config DIR``
sees it. Nothing here sends traffic to the endpoint addresses.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

NAMESPACE = "default"
DOMAIN = "bench.mesh"
PORT = 8080


def host(index: int) -> str:
    return f"svc{index:04d}.{DOMAIN}"


def endpoint_address(service: int, endpoint: int, *, epoch: int = 0) -> str:
    # 127.3.0.0/16 holds 65,536 addresses: enough for 1,000 x 4 endpoints and many epochs of one service.
    n = (service * 4 + endpoint + epoch * 7919) % 65536
    return f"127.3.{n >> 8}.{n & 255}"


def service_entry(index: int, *, epoch: int = 0, endpoints: int = 4) -> str:
    lines = [
        "apiVersion: networking.istio.io/v1",
        "kind: ServiceEntry",
        "metadata:",
        f"  name: svc{index:04d}",
        f"  namespace: {NAMESPACE}",
        "spec:",
        f"  hosts: [{host(index)}]",
        "  location: MESH_INTERNAL",
        "  resolution: STATIC",
        "  ports:",
        f"  - {{number: {PORT}, name: http, protocol: HTTP}}",
        "  endpoints:",
    ]
    for e in range(endpoints):
        version = "v1" if e % 2 == 0 else "v2"
        lines.append(f"  - {{address: {endpoint_address(index, e, epoch=epoch)}, labels: {{version: {version}}}}}")
    return "\n".join(lines) + "\n"


def write_services(directory: Path, count: int) -> None:
    """One file per service: ``svc0000.yaml`` .. ``svcNNNN.yaml``."""
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (directory / f"svc{i:04d}.yaml").write_text(service_entry(i))


def change_endpoint(directory: Path, *, index: int, epoch: int) -> None:
    """Move one endpoint of one service (a pure endpoint change), replacing the file atomically."""
    text = service_entry(index, epoch=epoch)
    tmp = directory / f".svc{index:04d}.yaml.tmp"
    tmp.write_text(text)
    tmp.replace(directory / f"svc{index:04d}.yaml")


def sidecar_egress(hosts: Sequence[str], *, name: str = "default") -> str:
    """A namespace-wide Sidecar whose egress lists only ``hosts``."""
    listed = ", ".join(f'"./{h}"' for h in hosts)
    return (
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata:\n"
        f"  name: {name}\n  namespace: {NAMESPACE}\nspec:\n  egress:\n  - hosts: [{listed}]\n"
    )


def weighted_route(service: int, *, v1: int) -> str:
    """A DestinationRule with subsets v1/v2 and a VirtualService splitting ``v1``% / rest."""
    h = host(service)
    return (
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n"
        f"  name: split-dr\n  namespace: {NAMESPACE}\nspec:\n  host: {h}\n  subsets:\n"
        "  - {name: v1, labels: {version: v1}}\n  - {name: v2, labels: {version: v2}}\n"
        "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n"
        f"  name: split\n  namespace: {NAMESPACE}\nspec:\n  hosts: [{h}]\n  http:\n  - route:\n"
        f"    - {{destination: {{host: {h}, subset: v1}}, weight: {v1}}}\n"
        f"    - {{destination: {{host: {h}, subset: v2}}, weight: {100 - v1}}}\n"
    )


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
