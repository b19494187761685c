"""Which mutual TLS mode a workload's inbound port accepts: Istio's PeerAuthentication rules.

The most specific policy wins: one in the workload's namespace whose
selector picks it (its ``portLevelMtls`` for the port first), then the
namespace's selector-less policy, then the mesh-wide one in the root
namespace, then ``MeshConfig.default_mtls_mode`` (PERMISSIVE). ``UNSET``
inherits from the next level down.
"""

from __future__ import annotations

from collections.abc import Mapping

from malla.config.model import Config
from malla.pilot.services import labels_match
from malla.pilot.snapshot import MeshSnapshot

STRICT = "STRICT"
PERMISSIVE = "PERMISSIVE"
DISABLE = "DISABLE"


def mtls_mode(snapshot: MeshSnapshot, *, namespace: str, labels: Mapping[str, str], port: int | None) -> str:
    """STRICT, PERMISSIVE or DISABLE for a workload (and one of its ports)."""
    mesh = snapshot.mesh
    own = snapshot.configs_of("PeerAuthentication", namespace)
    selected = [p for p in own if _selector(p) and labels_match(_selector(p), labels)]
    namespace_wide = [p for p in own if not _selector(p)]
    root = [p for p in snapshot.configs_of("PeerAuthentication", mesh.root_namespace) if not _selector(p)]
    chain: list[str | None] = []
    if selected:
        policy = selected[0].spec
        if port is not None and port in policy.port_level_mtls:
            chain.append(policy.port_level_mtls[port].mode)
        chain.append(_mode(selected[0]))
    chain += [_mode(namespace_wide[0]) if namespace_wide else None, _mode(root[0]) if root else None]
    for mode in chain:
        if mode and mode != "UNSET":
            return mode
    return mesh.default_mtls_mode


def _selector(policy: Config) -> Mapping[str, str]:
    sel = policy.spec.selector
    return sel.match_labels if sel is not None else {}


def _mode(policy: Config) -> str | None:
    return policy.spec.mtls.mode if policy.spec.mtls is not None else None
