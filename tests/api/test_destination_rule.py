"""DestinationRule specs parse as Istio reads them: traffic policies, subsets, enums, durations, strict fields."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from ruamel.yaml import YAML

from malla.api.networking.destination_rule import DestinationRule

RULE = """
host: reviews.prod.svc.cluster.local
trafficPolicy:
  loadBalancer:
    consistentHash:
      httpCookie:
        name: user
        ttl: 0s
        attributes: [{name: SameSite, value: Strict}, {name: Secure}]
      ringHash: {minimumRingSize: "1024"}
    localityLbSetting:
      enabled: true
      distribute:
      - from: us-west/zone1/*
        to: {"us-west/zone1/*": 80, "us-west/zone2/*": 20}
    warmup: {duration: 60s, minimumPercent: 10, aggression: 1.5}
  connectionPool:
    tcp:
      maxConnections: 100
      connectTimeout: 30ms
      tcpKeepalive: {time: 7200s, interval: 75s, probes: 9}
    http:
      http1MaxPendingRequests: 10
      http2MaxRequests: 1000
      h2UpgradePolicy: UPGRADE
      idleTimeout: 1h
  outlierDetection:
    consecutive5xxErrors: 7
    consecutiveGatewayErrors: 3
    interval: 5m
    baseEjectionTime: 15m
    maxEjectionPercent: 50
  tls:
    mode: MUTUAL
    clientCertificate: /etc/certs/cert.pem
    privateKey: /etc/certs/key.pem
    insecureSkipVerify: false
  portLevelSettings:
  - port: {number: 80}
    loadBalancer: {simple: LEAST_REQUEST}
  tunnel: {protocol: CONNECT, targetHost: egress.example.com, targetPort: 8443}
  retryBudget: {percent: 25, minRetryConcurrency: 3}
subsets:
- name: v1
  labels: {version: v1}
  trafficPolicy:
    proxyProtocol: {version: V2}
exportTo: ["."]
workloadSelector:
  matchLabels: {app: ratings}
"""


def test_full_rule_parses_into_typed_fields():
    dr = DestinationRule.model_validate(YAML(typ="safe", pure=True).load(RULE))
    tp = dr.traffic_policy
    ch = tp.load_balancer.consistent_hash
    assert ch.http_cookie.attributes[0].value == "Strict"
    assert ch.ring_hash.minimum_ring_size == 1024
    assert tp.load_balancer.locality_lb_setting.distribute[0].from_ == "us-west/zone1/*"
    assert tp.load_balancer.locality_lb_setting.distribute[0].to["us-west/zone2/*"] == 20
    assert tp.load_balancer.warmup.duration.seconds == 60
    assert tp.connection_pool.tcp.tcp_keepalive.interval.seconds == 75
    assert tp.connection_pool.http.h2_upgrade_policy == "UPGRADE"
    assert tp.outlier_detection.consecutive_5xx_errors == 7
    assert tp.outlier_detection.base_ejection_time.seconds == 900
    assert tp.tls.mode == "MUTUAL" and tp.tls.insecure_skip_verify is False
    assert tp.port_level_settings[0].load_balancer.simple == "LEAST_REQUEST"
    assert tp.tunnel.target_port == 8443
    assert tp.retry_budget.percent == 25
    assert dr.subsets[0].traffic_policy.proxy_protocol.version == "V2"
    assert dr.workload_selector.match_labels == {"app": "ratings"}


def test_json_names_are_written_back():
    dr = DestinationRule.model_validate({"host": "a", "trafficPolicy": {"outlierDetection": {"consecutive_5xx_errors": 2}}})
    assert dr.to_dict()["trafficPolicy"]["outlierDetection"] == {"consecutive5xxErrors": 2}
    lb = {"localityLbSetting": {"distribute": [{"from": "r", "to": {"r": 100}}]}}
    written = DestinationRule.model_validate({"host": "a", "trafficPolicy": {"loadBalancer": lb}}).to_dict()
    assert written["trafficPolicy"]["loadBalancer"]["localityLbSetting"]["distribute"] == [{"from": "r", "to": {"r": 100}}]


def test_snake_case_keys_give_the_same_rule():
    camel = DestinationRule.model_validate({"host": "a", "trafficPolicy": {"connectionPool": {"http": {"maxRequestsPerConnection": 1}}}})
    snake = DestinationRule.model_validate({"host": "a", "traffic_policy": {"connection_pool": {"http": {"max_requests_per_connection": 1}}}})
    assert camel == snake


@pytest.mark.parametrize(("given", "kept"), [("ROUND_ROBIN", "ROUND_ROBIN"), (4, "ROUND_ROBIN"), (0, "UNSPECIFIED"), (5, "LEAST_REQUEST")])
def test_simple_load_balancer_by_name_or_number(given, kept):
    dr = DestinationRule.model_validate({"trafficPolicy": {"loadBalancer": {"simple": given}}})
    assert dr.traffic_policy.load_balancer.simple == kept


def test_unknown_tls_mode_names_the_allowed_ones():
    with pytest.raises(ValidationError) as info:
        DestinationRule.model_validate({"trafficPolicy": {"tls": {"mode": "PERMISSIVE"}}})
    assert info.value.errors()[0]["loc"] == ("trafficPolicy", "tls", "mode")
    assert "DISABLE, SIMPLE, MUTUAL, ISTIO_MUTUAL" in str(info.value)


def test_unknown_field_is_rejected_with_its_path():
    with pytest.raises(ValidationError) as info:
        DestinationRule.model_validate({"subsets": [{"name": "v1", "selector": {"version": "v1"}}]})
    assert info.value.errors()[0]["loc"] == ("subsets", 0, "selector")


def test_durations_in_go_form():
    dr = DestinationRule.model_validate({"trafficPolicy": {"loadBalancer": {"warmupDurationSecs": "1m30s"}}})
    assert dr.traffic_policy.load_balancer.warmup_duration_secs.seconds == 90
    with pytest.raises(ValidationError) as info:
        DestinationRule.model_validate({"trafficPolicy": {"connectionPool": {"tcp": {"connectTimeout": 30}}}})
    assert info.value.errors()[0]["loc"] == ("trafficPolicy", "connectionPool", "tcp", "connectTimeout")


def test_booleans_are_strict():
    with pytest.raises(ValidationError) as info:
        DestinationRule.model_validate({"trafficPolicy": {"loadBalancer": {"consistentHash": {"useSourceIp": "yes"}}}})
    assert info.value.errors()[0]["loc"] == ("trafficPolicy", "loadBalancer", "consistentHash", "useSourceIp")
