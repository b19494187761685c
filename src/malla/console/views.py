"""What the console reads from the control plane: the views its HTTP API serves, nothing deeper.

The control plane hands the console these callables when it mounts it
(``controlplane/api.py``); each returns what the matching API endpoint
returns, so the console can be pointed at any control plane that serves
them and never reaches into the discovery loop, the xDS server or the
registry. The config store's resources come as ``Config`` objects because
the analyzers take them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from malla.config.model import Config


def _none() -> list[dict[str, Any]]:
    return []


@dataclass(frozen=True)
class ControlPlaneViews:
    workloads: Callable[[], list[dict[str, Any]]]  # GET /api/v1/workloads "items"
    proxies: Callable[[], list[dict[str, Any]]]  # GET /api/v1/proxies "items"
    configs: Callable[[], Sequence[Config]]  # the resources GET /api/v1/config lists
    problems: Callable[[], dict[str, list[dict[str, Any]]]]  # GET /api/v1/config "problems"
    targets: Callable[[], list[dict[str, Any]]] = _none  # GET /api/v1/telemetry/targets (Prometheus http_sd groups)
