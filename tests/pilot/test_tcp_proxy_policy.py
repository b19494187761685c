"""DestinationRule settings that act on the tcp_proxy: source-IP hashing and HTTP CONNECT/POST tunnels."""

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from malla.pilot.generate import generate
from malla.pilot.resources import CLUSTER, LISTENER
from malla.pilot.simulate import Request, simulate

from tests.pilot.mesh import router, sidecar, snapshot, workload

IP = "127.0.0.71"
MONGO = "mongodb.default.svc.cluster.local"
BASE = """
apiVersion: v1
kind: Service
metadata: {name: mongodb}
spec: {selector: {app: mongodb}, ports: [{name: mongo, port: 27017}]}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db-example}
spec:
  hosts: [db.example.com]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{number: 5432, name: tcp-pg, protocol: TCP}]
  endpoints: [{address: 127.0.2.10, ports: {tcp-pg: 3128}}]
"""
WORKLOADS = [
    workload("mongodb-a", "127.0.0.72", labels={"app": "mongodb", "v": "a"}, ports={"mongo": 27017}),
    workload("mongodb-b", "127.0.0.73", labels={"app": "mongodb", "v": "b"}, ports={"mongo": 27017}),
]


def resources_for(extra, proxy=None):
    snap = snapshot(BASE + "---\n" + extra, workloads=WORKLOADS)
    return generate(proxy or sidecar("client", ip=IP), snap)


def tcp_proxy(resources, port, address=IP):
    result = simulate(resources, Request(port=port, address=address, protocol="tcp"))
    chain = next(c for c in resources[LISTENER][result.listener].filter_chains if c.name == result.filter_chain)
    config = tcp_proxy_pb2.TcpProxy()
    chain.filters[-1].typed_config.Unpack(config)
    return config


HASHED = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: mongodb}
spec:
  host: mongodb
  trafficPolicy: {loadBalancer: {consistentHash: {useSourceIp: true}}}
  subsets:
  - {name: a, labels: {v: a}}
  - {name: b, labels: {v: b}, trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}}
"""


def test_source_ip_hashing_reaches_the_tcp_proxy_and_the_cluster_rings():
    resources = resources_for(HASHED)
    assert [p.WhichOneof("policy_specifier") for p in tcp_proxy(resources, 27017).hash_policy] == ["source_ip"]
    assert resources[CLUSTER][f"outbound|27017||{MONGO}"].lb_policy == cluster_pb2.Cluster.RING_HASH
    plain = resources_for(HASHED.replace("useSourceIp: true", "httpHeaderName: x-user"))
    assert not tcp_proxy(plain, 27017).hash_policy  # a TCP connection has no headers to hash


@pytest.mark.parametrize(("subset", "hashed"), [("a", True), ("b", False)])
def test_a_subset_route_uses_the_subset_load_balancer(subset, hashed):
    route = f"""
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: mongodb}}
spec:
  hosts: [mongodb]
  tcp: [{{route: [{{destination: {{host: mongodb, subset: {subset}}}}}]}}]
"""
    config = tcp_proxy(resources_for(HASHED + route), 27017)
    assert config.cluster == f"outbound|27017|{subset}|{MONGO}"
    assert bool(config.hash_policy) is hashed


TUNNEL = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: db-example}
spec:
  host: db.example.com
  trafficPolicy:
    tunnel: {protocol: PROTOCOL, targetHost: db.internal, targetPort: 5432}
"""


@pytest.mark.parametrize(("protocol", "post"), [("CONNECT", False), ("POST", True)])
def test_tunnel_makes_the_connection_an_http_request_through_the_cluster(protocol, post):
    config = tcp_proxy(resources_for(TUNNEL.replace("PROTOCOL", protocol)), 5432)
    assert config.cluster == "outbound|5432||db.example.com"
    assert config.tunneling_config.hostname == "db.internal:5432"
    assert config.tunneling_config.use_post is post


def test_no_rule_no_tunnel_and_ipv6_targets_are_bracketed():
    assert not tcp_proxy(resources_for(""), 5432).HasField("tunneling_config")
    v6 = resources_for(TUNNEL.replace("PROTOCOL", "CONNECT").replace("db.internal", '"2001:db8::7"'))
    assert tcp_proxy(v6, 5432).tunneling_config.hostname == "[2001:db8::7]:5432"


def test_gateway_tcp_server_carries_the_tunnel_of_its_destination():
    gateway = """
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 31400, name: tcp, protocol: TCP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db, namespace: default}
spec:
  hosts: ["*"]
  gateways: [istio-system/edge]
  tcp: [{route: [{destination: {host: db.example.com, port: {number: 5432}}}]}]
"""
    resources = resources_for(TUNNEL.replace("PROTOCOL", "CONNECT") + gateway, proxy=router())
    config = tcp_proxy(resources, 31400, address="0.0.0.0")
    assert (config.cluster, config.tunneling_config.hostname) == ("outbound|5432||db.example.com", "db.internal:5432")
