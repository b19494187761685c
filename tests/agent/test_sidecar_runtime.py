"""Every bootstrap's runtime lets Envoy accept the regexes Istio accepts (Envoy validates, not Python)."""

from __future__ import annotations

from typing import Any

import pytest

from malla.envoy.bootstrap import TcpAddress, build_bootstrap
from malla.envoy.process import validate_config

pytestmark = pytest.mark.envoy

# An e-mail pattern for an ``end-user`` header match: 748 RE2 instructions, over Envoy's default of 100.
EMAIL = r"^[a-z0-9._%+-]{1,64}@[a-z0-9.-]{1,63}\.[a-z]{2,24}$"


def _config_matching(regex: str, **extra: Any) -> dict[str, Any]:
    route = {
        "match": {"prefix": "/", "headers": [{"name": "end-user", "string_match": {"safe_regex": {"regex": regex}}}]},
        "direct_response": {"status": 200},
    }
    manager = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "test",
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [route]}]},
    }
    listener = {
        "name": "test", "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}]}],
    }
    return {"static_resources": {"listeners": [listener]}, **extra}


def test_envoy_accepts_an_istio_sized_regex_with_the_bootstrap_runtime() -> None:
    runtime = build_bootstrap(node_id="n", node_cluster="c", xds_address=TcpAddress("127.0.0.1", 15010))["layered_runtime"]
    ok, output = validate_config(_config_matching(EMAIL, layered_runtime=runtime))
    assert ok, output


def test_without_it_envoy_refuses_the_same_regex() -> None:
    ok, output = validate_config(_config_matching(EMAIL))
    assert not ok
    assert "program size" in output
