import pytest
from hypothesis import given
from hypothesis import strategies as st

from malla.pilot import names

label = st.from_regex(r"[a-z]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
hostname = st.lists(label, min_size=1, max_size=5).map(".".join) | label.map(lambda s: f"*.{s}.com")
port = st.integers(min_value=0, max_value=65535)


@given(
    direction=st.sampled_from(list(names.Direction)), port=port, subset=st.just("") | label, host=st.just("") | hostname
)
def test_cluster_names_round_trip_in_both_forms(direction, port, subset, host):
    key = names.ClusterKey(direction, port, subset, host)
    assert names.parse_cluster_name(names.format_cluster_name(direction, port=port, subset=subset, host=host)) == key
    assert names.parse_cluster_name(names.format_sni(direction, port=port, subset=subset, host=host)) == key


def test_cluster_names_are_istios():
    assert names.outbound_cluster_name("reviews.default.svc.cluster.local", 9080, "v2") == (
        "outbound|9080|v2|reviews.default.svc.cluster.local"
    )
    assert names.inbound_cluster_name(9080) == "inbound|9080||"
    assert names.format_sni("outbound", port=9080, subset="v2", host="reviews.default.svc.cluster.local") == (
        "outbound_.9080_.v2_.reviews.default.svc.cluster.local"
    )


@pytest.mark.parametrize("bad", ["outbound|9080|v1", "sideways|80||a", "outbound|http||a", "outbound|70000||a"])
def test_bad_cluster_names_say_what_is_expected(bad):
    with pytest.raises(ValueError, match="outbound|expected|port|direction"):
        names.parse_cluster_name(bad)


@given(address=st.sampled_from(["0.0.0.0", "127.0.0.5", "::", "10.1.2.3"]), port=port)
def test_listener_names_round_trip(address, port):
    assert names.parse_listener_name(names.listener_name(address, port)) == (address, port)


def test_listener_names_are_istios():
    assert names.listener_name("0.0.0.0", 9080) == "0.0.0.0_9080"
    with pytest.raises(ValueError, match="ADDRESS_PORT"):
        names.parse_listener_name("virtualInbound")


@given(port=port, port_name=label, gateway=label, namespace=label)
def test_route_names_round_trip(port, port_name, gateway, namespace):
    assert names.parse_route_name(names.outbound_route_name(port)) == names.RouteKey("outbound", port)
    assert names.parse_route_name(names.gateway_http_route_name(port)) == names.RouteKey("http", port)
    https = names.gateway_https_route_name(port, port_name=port_name, gateway=gateway, namespace=namespace)
    assert names.parse_route_name(https) == names.RouteKey("https", port, port_name, gateway, namespace)
    assert names.parse_route_name(names.inbound_cluster_name(port)) == names.RouteKey("inbound", port)


def test_route_names_are_istios():
    assert names.outbound_route_name(9080) == "9080"
    assert names.gateway_http_route_name(8080) == "http.8080"
    assert names.gateway_https_route_name(443, port_name="https", gateway="bookinfo-gateway", namespace="default") == (
        "https.443.https.bookinfo-gateway.default"
    )
    with pytest.raises(ValueError, match="route configuration name"):
        names.parse_route_name("tcp.80")


@given(credential=label)
def test_secret_names_round_trip(credential):
    assert names.parse_secret_name(names.credential_secret_name(credential)) == (credential, False)
    assert names.parse_secret_name(names.credential_ca_secret_name(credential)) == (credential, True)


def test_mesh_secrets():
    assert names.parse_secret_name("default") == ("default", False)
    assert names.parse_secret_name("ROOTCA") == ("ROOTCA", True)
    with pytest.raises(ValueError, match="kubernetes://NAME"):
        names.parse_secret_name("file-cert:/x")
