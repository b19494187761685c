"""`malla translate` as a user runs it: Istio YAML in, one proxy's Envoy config out, nothing started."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from malla.cli.main import app

runner = CliRunner()

MESH = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.1.5, labels: {version: v1}}, {address: 127.0.1.6, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews.default.svc.cluster.local
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  http:
  - route:
    - {destination: {host: reviews.default.svc.cluster.local, subset: v1}, weight: 80}
    - {destination: {host: reviews.default.svc.cluster.local, subset: v2}, weight: 20}
"""

RATE_LIMIT = """\
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: rl, namespace: default}
spec:
  workloadSelector:
    labels: {app: httpbin}
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: SIDECAR_INBOUND
      listener:
        filterChain:
          filter: {name: envoy.filters.network.http_connection_manager}
    patch:
      operation: INSERT_FIRST
      value:
        name: envoy.filters.http.local_ratelimit
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
          stat_prefix: http_local_rate_limiter
  - applyTo: BOOTSTRAP
    patch: {operation: MERGE, value: {}}
"""


def test_a_weighted_split_comes_out_as_istio_names_it(tmp_path):
    (tmp_path / "mesh.yaml").write_text(MESH)
    res = runner.invoke(app, ["translate", "-f", str(tmp_path / "mesh.yaml"), "-s", "routes", "-o", "json"])
    assert res.exit_code == 0, res.output
    routes = json.loads(res.stdout)["routes"]
    weighted = [r["route"]["weightedClusters"]["clusters"] for rc in routes for vh in rc.get("virtualHosts", [])
                for r in vh.get("routes", []) if "weightedClusters" in r.get("route", {})]
    assert [(c["name"], c["weight"]) for c in weighted[0]] == [
        ("outbound|9080|v1|reviews.default.svc.cluster.local", 80),
        ("outbound|9080|v2|reviews.default.svc.cluster.local", 20)]


def test_envoy_filters_say_what_they_applied_and_what_they_skipped(tmp_path):
    (tmp_path / "mesh.yaml").write_text(MESH + RATE_LIMIT)
    args = ["translate", "-f", str(tmp_path / "mesh.yaml"), "--port", "8000/http", "-s", "listeners", "-o", "json"]
    selected = runner.invoke(app, [*args, "--proxy-labels", "app=httpbin"])
    assert selected.exit_code == 0, selected.output
    said = " ".join(selected.stderr.split())
    assert "applied EnvoyFilter default/rl spec.configPatches[0]" in said
    assert "skipped EnvoyFilter default/rl spec.configPatches[1]: applyTo BOOTSTRAP is not applied by malla" in said
    assert "envoy.filters.http.local_ratelimit" in selected.stdout
    other = runner.invoke(app, [*args, "--proxy-labels", "app=reviews"])
    assert other.exit_code == 0 and "EnvoyFilters for this proxy" not in other.stderr
    assert "envoy.filters.http.local_ratelimit" not in other.stdout


def test_bad_labels_are_a_usage_error(tmp_path):
    (tmp_path / "mesh.yaml").write_text(MESH)
    res = runner.invoke(app, ["translate", "-f", str(tmp_path / "mesh.yaml"), "--proxy-labels", "app"])
    assert res.exit_code == 2
    assert "--proxy-labels: 'app' is not key=value" in res.stderr
