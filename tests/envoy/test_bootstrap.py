"""The bootstrap builder: pure checks, and Envoy itself as the validator."""

from __future__ import annotations

import pytest

from malla.envoy.bootstrap import (
    XDS_CLUSTER,
    Locality,
    TcpAddress,
    UnixAddress,
    bootstrap_proto,
    build_bootstrap,
)
from malla.envoy.process import validate_config


def build(**overrides: object) -> dict:
    args: dict = {"node_id": "sidecar~10.0.0.1~reviews-v2.default~default.svc.cluster.local",
                  "node_cluster": "reviews.default",
                  "xds_address": TcpAddress("127.0.0.1", 15010)}
    args.update(overrides)
    return build_bootstrap(**args)


def test_node_identity_metadata_and_locality_reach_the_proto() -> None:
    proto = bootstrap_proto(build(node_metadata={"NAMESPACE": "default", "LABELS": {"app": "r"}},
                                  locality=Locality(region="eu", zone="eu-1")))
    assert proto.node.id.startswith("sidecar~") and proto.node.cluster == "reviews.default"
    assert proto.node.metadata["NAMESPACE"] == "default"
    assert proto.node.metadata["LABELS"]["app"] == "r"
    assert (proto.node.locality.region, proto.node.locality.zone) == ("eu", "eu-1")


@pytest.mark.parametrize(("mode", "api_type"), [("sotw", "GRPC"), ("delta", "DELTA_GRPC")])
def test_everything_comes_from_ads_in_the_chosen_mode(mode: str, api_type: str) -> None:
    proto = bootstrap_proto(build(mode=mode))
    ads = proto.dynamic_resources.ads_config
    assert ads.ApiType.Name(ads.api_type) == api_type
    assert ads.grpc_services[0].envoy_grpc.cluster_name == XDS_CLUSTER
    for source in (proto.dynamic_resources.cds_config, proto.dynamic_resources.lds_config):
        assert source.HasField("ads")
        assert source.initial_fetch_timeout.ToTimedelta().total_seconds() == 0


def test_control_plane_cluster_speaks_http2_over_tcp_or_unix_socket() -> None:
    tcp = build()["static_resources"]["clusters"][0]
    options = tcp["typed_extension_protocol_options"]
    assert "http2_protocol_options" in next(iter(options.values()))["explicit_http_config"]
    address = tcp["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    assert address == {"socket_address": {"address": "127.0.0.1", "port_value": 15010}}
    unix = build(xds_address=UnixAddress("/run/malla/xds.sock"))["static_resources"]["clusters"][0]
    address = unix["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    assert address == {"pipe": {"path": "/run/malla/xds.sock"}}
    assert build(xds_address=TcpAddress("istiod.example", 15012))[
        "static_resources"]["clusters"][0]["type"] == "LOGICAL_DNS"


def test_admin_defaults_to_a_free_loopback_port() -> None:
    assert build()["admin"] == {"address": {"socket_address": {
        "address": "127.0.0.1", "port_value": 0}}}


@pytest.mark.parametrize(("overrides", "field"), [
    ({"node_id": ""}, "node_id"),
    ({"mode": "grpc"}, "mode"),
    ({"initial_fetch_timeout_s": -1}, "initial_fetch_timeout_s"),
    ({"reconnect_backoff_s": (2.0, 1.0)}, "reconnect_backoff_s"),
    ({"xds_address": TcpAddress("127.0.0.1", 70000)}, "address.port"),
])
def test_bad_inputs_name_the_field(overrides: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        build(**overrides)


def test_output_is_deterministic() -> None:
    assert build(node_metadata={"b": "1", "a": "2"}) == build(node_metadata={"a": "2", "b": "1"})


@pytest.mark.envoy
@pytest.mark.parametrize("mode", ["sotw", "delta"])
@pytest.mark.parametrize("address", [TcpAddress("127.0.0.1", 15010),
                                     UnixAddress("/tmp/malla-test-xds.sock"),
                                     TcpAddress("istiod.example", 15012)])
def test_envoy_validates_generated_bootstraps(mode: str, address: object) -> None:
    ok, output = validate_config(build(mode=mode, xds_address=address,
                                       node_metadata={"LABELS": {"app": "reviews"}},
                                       locality=Locality(region="eu"),
                                       initial_fetch_timeout_s=2.5))
    assert ok, output


@pytest.mark.envoy
def test_envoy_validation_reports_a_bad_pass_through_section() -> None:
    ok, output = validate_config(build(stats_config={"stats_tags": [{"tag_name": ""}]}))
    assert not ok
    assert "tag" in output
