"""Sidecar specs parse as Istio reads them: listeners, capture modes, TLS, connection pools, outbound policy."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from ruamel.yaml import YAML

from malla.api.networking.sidecar import Sidecar

SIDECAR = """
workloadSelector:
  labels: {app: productpage}
ingress:
- port: {number: 9080, protocol: HTTPS, name: somename}
  defaultEndpoint: 127.0.0.1:8080
  captureMode: NONE
  tls:
    mode: SIMPLE
    privateKey: /etc/certs/privatekey.pem
    serverCertificate: /etc/certs/servercert.pem
  connectionPool:
    http: {http1MaxPendingRequests: 100}
    tcp: {idleTimeout: 0s}
egress:
- port: {number: 3306, protocol: MYSQL, name: egressmysql}
  captureMode: 1
  bind: 127.0.0.1
  hosts: ["*/mysql.foo.com"]
- hosts: [istio-system/*]
inboundConnectionPool:
  http: {maxRequestsPerConnection: 10}
outboundTrafficPolicy:
  mode: ALLOW_ANY
  egressProxy:
    host: foo.bar.com
    subset: shiny
    port: {number: 443}
"""


def test_sidecar_parses_into_typed_fields():
    sc = Sidecar.model_validate(YAML(typ="safe", pure=True).load(SIDECAR))
    assert sc.workload_selector.labels == {"app": "productpage"}
    ingress = sc.ingress[0]
    assert (ingress.port.number, ingress.capture_mode, ingress.default_endpoint) == (9080, "NONE", "127.0.0.1:8080")
    assert ingress.tls.mode == "SIMPLE"
    assert ingress.connection_pool.tcp.idle_timeout.nanos == 0
    assert sc.egress[0].capture_mode == "IPTABLES"
    assert sc.egress[1].port is None and sc.egress[1].hosts == ["istio-system/*"]
    assert sc.inbound_connection_pool.http.max_requests_per_connection == 10
    assert sc.outbound_traffic_policy.egress_proxy.port.number == 443


@pytest.mark.parametrize(("given", "kept"), [("REGISTRY_ONLY", "REGISTRY_ONLY"), (0, "REGISTRY_ONLY"), (1, "ALLOW_ANY")])
def test_outbound_mode_by_name_or_number(given, kept):
    assert Sidecar.model_validate({"outboundTrafficPolicy": {"mode": given}}).outbound_traffic_policy.mode == kept


def test_snake_case_keys_give_the_same_sidecar():
    camel = Sidecar.model_validate({"workloadSelector": {"labels": {"a": "b"}}, "egress": [{"captureMode": "NONE", "hosts": ["./*"]}]})
    snake = Sidecar.model_validate({"workload_selector": {"labels": {"a": "b"}}, "egress": [{"capture_mode": "NONE", "hosts": ["./*"]}]})
    assert camel == snake


def test_unknown_capture_mode_names_the_allowed_ones():
    with pytest.raises(ValidationError) as info:
        Sidecar.model_validate({"egress": [{"captureMode": "TPROXY", "hosts": ["./*"]}]})
    assert info.value.errors()[0]["loc"] == ("egress", 0, "captureMode")
    assert "DEFAULT, IPTABLES, NONE" in str(info.value)


def test_unknown_field_is_rejected_with_its_path():
    with pytest.raises(ValidationError) as info:
        Sidecar.model_validate({"ingress": [{"port": {"number": 80}, "hosts": ["./*"]}]})
    assert info.value.errors()[0]["loc"] == ("ingress", 0, "hosts")


def test_hosts_must_be_strings():
    with pytest.raises(ValidationError) as info:
        Sidecar.model_validate({"egress": [{"hosts": [42]}]})
    assert info.value.errors()[0]["loc"] == ("egress", 0, "hosts", 0)
