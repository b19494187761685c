"""Host names, visibility scopes and port protocols as Istio's analyzers read them."""

from __future__ import annotations

import pytest

from malla.analysis.hosts import (
    annotation_scopes,
    export_scopes,
    hosts_match,
    names_for_namespace,
    service_name_for_host,
    to_fqdn,
)
from malla.analysis.protocols import UNSUPPORTED, service_port_protocol


def test_short_names_resolve_in_the_writers_namespace() -> None:
    assert to_fqdn("reviews", "default") == "reviews.default.svc.cluster.local"
    assert to_fqdn("reviews.other.svc.cluster.local", "default") == "reviews.other.svc.cluster.local"
    assert to_fqdn("*.example.com", "default") == "*.example.com"
    assert service_name_for_host("reviews.other.svc.cluster.local", "default") == ("other", "reviews")
    assert service_name_for_host("reviews", "default") == ("default", "reviews")


@pytest.mark.parametrize(
    ("a", "b", "match"),
    [
        ("foo.com", "foo.com", True),
        ("foo.com", "bar.com", False),
        ("*.com", "foo.com", True),
        ("bar.com", "*.com", True),
        ("*.foo.com", "foo.com", False),
        ("*", "foo.com", True),
        ("*", "*.com", True),
    ],
)
def test_hosts_match_like_istio(a: str, b: str, match: bool) -> None:
    assert hosts_match(a, b) is match


def test_names_for_namespace_strips_visible_prefixes() -> None:
    assert names_for_namespace(["ns1/foo.com", "ns2/bar.com"], "ns1") == ["foo.com"]
    assert names_for_namespace(["ns1/foo.com", "*/bar.com"], "ns3") == ["bar.com"]
    assert names_for_namespace(["foo.com", "ns2/bar.com"], "ns3") == ["foo.com"]


def test_export_scopes() -> None:
    assert export_scopes([], "ns") == ["*"]
    assert export_scopes([".", "other"], "ns") == ["ns", "other"]
    assert export_scopes(["other", "*"], "ns") == ["*"]
    assert annotation_scopes(None, "ns") == ["*"]
    assert annotation_scopes("a, .", "ns") == ["a", "ns"]


@pytest.mark.parametrize(
    ("port", "protocol"),
    [
        ({"name": "http-web", "port": 80}, "HTTP"),
        ({"name": "grpc-web-x", "port": 80}, "GRPC-Web"),
        ({"name": "TCP", "port": 80}, "TCP"),
        ({"name": "web", "port": 80}, UNSUPPORTED),
        ({"name": "", "port": 3306}, "TCP"),
        ({"name": "web", "port": 80, "appProtocol": "https"}, "HTTPS"),
        ({"name": "web", "port": 80, "appProtocol": "kubernetes.io/h2c"}, "HTTP2"),
        ({"name": "web", "port": 80, "protocol": "UDP"}, "UDP"),
    ],
)
def test_service_port_protocol(port: dict, protocol: str) -> None:
    assert service_port_protocol(port) == protocol
