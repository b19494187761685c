"""A config Envoy refuses: shown as REJECTED with Envoy's reason, not re-sent, the old config serves on."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.e2e.mesh import App, Mesh, wait_for

pytestmark = pytest.mark.envoy

URL = "http://reviews:9080/"

SUBSETS = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"""


def malla_cli(*args: str) -> str:
    """What a user sees running ``malla ARGS`` (stdout and stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")} | {"COLUMNS": "500"}
    done = subprocess.run([sys.executable, "-m", "malla", *args], capture_output=True, text=True, env=env,
                          timeout=60, stdin=subprocess.DEVNULL)
    return done.stdout + done.stderr


def route_all_to(subset: str, *, header_regex: str | None = None) -> str:
    match = ""
    if header_regex is not None:
        match = f"""
  - match:
    - headers:
        x-user: {{regex: "{header_regex}"}}
    route:
    - destination: {{host: reviews, subset: {subset}}}"""
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews}}
spec:
  hosts: [reviews]
  exportTo: ["."]
  http:{match}
  - route:
    - destination: {{host: reviews, subset: {subset}}}
"""


# Valid RE2, so it passes validation; but its compiled program (about 38,000
# instructions) is beyond what Envoy accepts (re2.max_program_size.error_level).
TOO_BIG_REGEX = "(abcdefghijklmnopqrstuvwxyz0123456789){1000}"


def test_rejected_config_is_reported_and_the_previous_one_keeps_serving(mesh: Mesh) -> None:
    *_, client = mesh.start(App("reviews", "v1"), App("reviews", "v2"), clients=1)
    mesh.apply(SUBSETS + "---" + route_all_to("v1"))
    http = client.http()
    assert {http.get(URL).version for _ in range(10)} == {"v1"}

    mesh.apply(route_all_to("v2", header_regex=TOO_BIG_REGEX), wait=False)
    routes = wait_for(lambda: mesh.type_status(client, "RouteConfiguration"), lambda t: t["state"] == "REJECTED",
                      timeout=1.0, what="the client's routes to show as REJECTED")
    assert "program size" in (routes["error"] or ""), routes
    assert routes["rejected"] == ["15001"], "the outbound route configuration is the one refused"
    shown = malla_cli("proxy-status", "--home", str(mesh.cp.home))
    assert f"REJECTED {client.node_id} RouteConfiguration: regex" in shown, shown

    time.sleep(1.0)  # a window in which a resend loop would show
    again = mesh.type_status(client, "RouteConfiguration")
    assert (again["responses"], again["nacks"]) == (routes["responses"], routes["nacks"]), (routes, again)
    assert again["state"] == "REJECTED"
    assert {http.get(URL).version for _ in range(20)} == {"v1"}, "Envoy keeps the last config it accepted"

    mesh.apply(route_all_to("v2"))
    assert mesh.type_status(client, "RouteConfiguration")["error"] is None
    assert {http.get(URL).version for _ in range(10)} == {"v2"}
