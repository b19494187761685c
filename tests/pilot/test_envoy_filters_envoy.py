"""EnvoyFilter with real Envoy: patched config passes ``envoy --mode validate``, and Istio's local rate limit works."""

from __future__ import annotations

import pytest

from malla.pilot.consistency import assert_consistent
from malla.pilot.snapshot import XdsMode
from malla.pilot.static_config import static_bootstrap_json
from tests.e2e.conftest import control_plane, mesh, xds_mode  # noqa: F401  (fixtures of the e2e harness)
from tests.e2e.mesh import App, Mesh
from tests.pilot import test_envoy_filters as cases
from tests.pilot.test_envoy_validate import validate

pytestmark = pytest.mark.envoy


def test_envoy_accepts_patched_config(tmp_path):
    text = "---".join([cases.RATE_LIMIT, cases.ROUTE_PATCHES, cases.LISTENER_OPS, cases.CLUSTER_MERGE])
    _, (patched,) = cases._resources(text, cases.httpbin())
    assert "extra-listener" in patched[cases.LISTENER]  # the patches did apply
    assert_consistent(patched, secrets=cases.SECRETS)
    result = validate(static_bootstrap_json(patched, node_id="sidecar~127.0.0.20~httpbin.default"), tmp_path)
    assert result.returncode == 0, f"Envoy rejected the patched config:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"


# Istio's "Enabling Rate Limits using Envoy" (local rate limit), with a bucket of 2 tokens (refilled hourly here, each minute in Istio's example).
LOCAL_RATE_LIMIT = """
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: filter-local-ratelimit-svc}
spec:
  workloadSelector:
    labels: {app: limited}
  configPatches:
    - applyTo: HTTP_FILTER
      match:
        context: SIDECAR_INBOUND
        listener:
          filterChain:
            filter:
              name: "envoy.filters.network.http_connection_manager"
      patch:
        operation: INSERT_BEFORE
        value:
          name: envoy.filters.http.local_ratelimit
          typed_config:
            "@type": type.googleapis.com/udpa.type.v1.TypedStruct
            type_url: type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
            value:
              stat_prefix: http_local_rate_limiter
              token_bucket: {max_tokens: 2, tokens_per_fill: 2, fill_interval: 3600s}  # Istio: 60s; an hour so no refill lands mid-test
              filter_enabled:
                runtime_key: local_rate_limit_enabled
                default_value: {numerator: 100, denominator: HUNDRED}
              filter_enforced:
                runtime_key: local_rate_limit_enforced
                default_value: {numerator: 100, denominator: HUNDRED}
              response_headers_to_add:
                - append_action: OVERWRITE_IF_EXISTS_OR_ADD
                  header: {key: x-local-rate-limit, value: "true"}
"""


@pytest.mark.parametrize("xds_mode", [XdsMode.SOTW], ids=["sotw"])
def test_local_rate_limit_answers_429_on_the_selected_workload_only(mesh: Mesh) -> None:
    # Applied before the workloads start: their sidecars begin with the filter, no connection on an old chain.
    mesh.apply(LOCAL_RATE_LIMIT)
    _limited, _free, client = mesh.start(App("limited"), App("free"), clients=1)
    http = client.http()
    statuses = []
    for _ in range(20):
        reply = http.get("http://limited:9080/")
        statuses.append(reply.status)
        if reply.status == 429:
            assert reply.headers.get("x-local-rate-limit") == "true", reply.headers
            break
    assert statuses[-1] == 429, f"no request was rate limited: {statuses}"
    assert statuses.count(200) <= 2, statuses  # the bucket holds 2 tokens
    assert all(http.get("http://limited:9080/").status == 429 for _ in range(3))
    assert [http.get("http://free:9080/").status for _ in range(10)] == [200] * 10
