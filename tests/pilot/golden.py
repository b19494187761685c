"""Golden cases: ``golden/<case>/input.yaml`` in, one ``<proxy>.json`` per proxy out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict

from malla.pilot.generate import Resources, generate
from malla.pilot.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE
from malla.pilot.snapshot import Proxy

from tests.pilot.mesh import proxies, snapshot

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "input.yaml").exists())
_KEYS = {CLUSTER: "clusters", ENDPOINT: "endpoints", LISTENER: "listeners", ROUTE: "routes"}


def load_case(case: str) -> list[tuple[Proxy, Resources]]:
    text = (GOLDEN / case / "input.yaml").read_text()
    snap = snapshot(text)
    return [(proxy, generate(proxy, snap)) for proxy in proxies(text)]


def as_json(resources: Resources) -> dict[str, Any]:
    return {_KEYS[t]: {name: MessageToDict(m) for name, m in by_name.items()} for t, by_name in resources.items()}


def golden_path(case: str, proxy: Proxy) -> Path:
    return GOLDEN / case / f"{proxy.id}.json"


def render(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"
