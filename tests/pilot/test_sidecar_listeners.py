"""A Sidecar's own ingress and egress listeners: which listener, chain, route and cluster a connection meets."""

from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from malla.pilot.consistency import check_consistency
from malla.pilot.generate import generate
from malla.pilot.listeners_egress import build_egress_listeners
from malla.pilot.listeners_inbound import build_inbound_listeners, inbound_chains
from malla.pilot.protocol import Protocol
from malla.pilot.resources import CLUSTER, LISTENER
from malla.pilot.routes_sidecar import build_inbound_route_configs
from malla.pilot.sidecar_ingress import inbound_ports
from malla.pilot.sidecar_scope import build_scope
from malla.pilot.simulate import Request, simulate
from malla.pilot.snapshot import CaptureMode

from tests.pilot.mesh import sidecar, snapshot, workload

IP = "127.0.0.61"
REVIEWS = "reviews.default.svc.cluster.local"
RATINGS = "ratings.default.svc.cluster.local"
MONGO = "mongodb.default.svc.cluster.local"
SERVICES = """
apiVersion: v1
kind: Service
metadata: {name: reviews}
spec: {selector: {app: reviews}, ports: [{name: http, port: 9080}]}
---
apiVersion: v1
kind: Service
metadata: {name: ratings}
spec: {selector: {app: ratings}, ports: [{name: http, port: 9080}]}
---
apiVersion: v1
kind: Service
metadata: {name: mongodb}
spec: {selector: {app: mongodb}, ports: [{name: mongo, port: 27017}]}
"""
WORKLOADS = [
    workload("reviews", "127.0.0.62"),
    workload("ratings", "127.0.0.63"),
    workload("mongodb", "127.0.0.64", ports={"mongo": 27017}),
]


def client(*, inbound=((9080, 19080, Protocol.HTTP),), **kw):
    return sidecar("client", ip=IP, inbound=inbound, **kw)


def generated(sidecar_yaml, *, extra="", proxy=None):
    snap = snapshot(SERVICES + "---\n" + sidecar_yaml + extra, workloads=WORKLOADS)
    proxy = proxy or client()
    resources = generate(proxy, snap)
    report = check_consistency(resources)
    assert report.ok, report.errors
    return resources, snap, proxy


def cluster_address(resources, name):
    endpoint = resources[CLUSTER][name].load_assignment.endpoints[0].lb_endpoints[0].endpoint.address
    if endpoint.HasField("pipe"):
        return endpoint.pipe.path
    return f"{endpoint.socket_address.address}:{endpoint.socket_address.port_value}"


INGRESS = """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: client}
spec:
  workloadSelector: {labels: {app: client}}
  ingress:
  - port: {number: 9443, protocol: HTTP, name: http-alt}
    defaultEndpoint: 127.0.0.1:8443
  - port: {number: 7000, protocol: TCP, name: tcp-uds}
    defaultEndpoint: unix:///var/run/app.sock
  - port: {number: 7001, protocol: TCP, name: tcp-captured}
    captureMode: IPTABLES
    defaultEndpoint: 0.0.0.0:17001
  - port: {number: 7002, protocol: TCP, name: tcp-bound}
    bind: 127.0.0.99
"""


def test_ingress_ports_replace_the_registered_ones():
    resources, _, _ = generated(INGRESS)
    page = simulate(resources, Request(port=9443, address=IP, host="client:9443"))
    assert (page.listener, page.route_config, page.cluster) == (f"{IP}_9443", "inbound|9443||", "inbound|9443||")
    assert cluster_address(resources, "inbound|9443||") == "127.0.0.1:8443"
    assert simulate(resources, Request(port=9080, address=IP, host="client:9080")).error == "no listener on port 9080"
    assert "inbound|9080||" not in resources[CLUSTER]


def test_ingress_endpoints_unix_socket_instance_address_and_captured_ports():
    resources, _, _ = generated(INGRESS)
    uds = simulate(resources, Request(port=7000, address=IP, protocol="tcp"))
    assert (uds.listener, uds.cluster) == (f"{IP}_7000", "inbound|7000||")
    assert cluster_address(resources, "inbound|7000||") == "/var/run/app.sock"
    captured = simulate(resources, Request(port=7001, address=IP, protocol="tcp"))
    assert (captured.listener, captured.filter_chain) == ("virtualInbound", "inbound|7001||")
    # 0.0.0.0 is the instance: with explicit capture the app's own address, not the sidecar's.
    assert cluster_address(resources, "inbound|7001||") == "127.0.0.1:17001"
    bound = simulate(resources, Request(port=7002, address="127.0.0.99", protocol="tcp"))
    assert bound.listener == "127.0.0.99_7002"
    # No defaultEndpoint and no registered port 7002: the app on its own address, same port.
    assert cluster_address(resources, "inbound|7002||") == "127.0.0.1:7002"


def test_ingress_without_default_endpoint_keeps_the_registered_app_port():
    resources, _, _ = generated(
        """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: client}
spec:
  workloadSelector: {labels: {app: client}}
  ingress: [{port: {number: 9080, protocol: HTTP, name: http}}]
"""
    )
    assert cluster_address(resources, "inbound|9080||") == "127.0.0.1:19080"
    assert simulate(resources, Request(port=9080, address=IP, host="c")).listener == f"{IP}_9080"


def test_transparent_capture_puts_default_ingress_ports_in_virtual_inbound():
    proxy = client(capture=CaptureMode.TRANSPARENT)
    resources, snap, _ = generated(INGRESS, proxy=proxy)
    page = simulate(resources, Request(port=9443, listener="virtualInbound", host="client:9443"))
    assert (page.filter_chain, page.cluster) == ("inbound|9443||", "inbound|9443||")
    # 0.0.0.0 is the instance: with transparent capture, the workload's own address.
    assert cluster_address(resources, "inbound|7001||") == f"{IP}:17001"
    by_port = {p.port: p for p in inbound_ports(proxy, snap)}
    assert not by_port[7002].own_listener  # DEFAULT capture is redirection here, bind or not


def test_ingress_tls_terminates_when_peer_authentication_disables_mtls():
    tls_sidecar = """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: client}
spec:
  workloadSelector: {labels: {app: client}}
  ingress:
  - port: {number: 9443, protocol: HTTPS, name: https}
    defaultEndpoint: 127.0.0.1:8080
    tls: {mode: MUTUAL, serverCertificate: /certs/cert.pem, privateKey: /certs/key.pem, caCertificates: /certs/ca.pem}
"""
    resources, _, _ = generated(tls_sidecar)
    mesh_tls = simulate(resources, Request(port=9443, address=IP, protocol="tcp", tls=True))
    assert mesh_tls.filter_chain == "inbound|9443||-mtls"  # PERMISSIVE: the port stays Istio's
    disable = """
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: client}
spec:
  selector: {matchLabels: {app: client}}
  mtls: {mode: STRICT}
  portLevelMtls: {9443: {mode: DISABLE}}
"""
    resources, _, _ = generated(tls_sidecar, extra=disable)
    result = simulate(resources, Request(port=9443, address=IP, host="client", tls=True))
    assert (result.filter_chain, result.cluster) == ("inbound|9443||-tls", "inbound|9443||")  # HTTPS -> HTTP inside
    assert simulate(resources, Request(port=9443, address=IP, host="client")).error.startswith("no filter chain")
    chain = resources[LISTENER][f"{IP}_9443"].filter_chains[0]
    context = tls_pb2.DownstreamTlsContext()
    chain.transport_socket.typed_config.Unpack(context)
    assert context.require_client_certificate.value
    assert context.common_tls_context.tls_certificates[0].certificate_chain.filename == "/certs/cert.pem"
    assert context.common_tls_context.validation_context.trusted_ca.filename == "/certs/ca.pem"


EGRESS = """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: client}
spec:
  workloadSelector: {labels: {app: client}}
  egress:
  - port: {number: 9080, protocol: HTTP, name: http}
    hosts: [./reviews.default.svc.cluster.local]
  - port: {number: 27018, protocol: TCP, name: mongo}
    bind: 127.0.0.98
    hosts: [./mongodb.default.svc.cluster.local]
  - hosts: ["./*"]
"""


def test_egress_port_listener_serves_only_its_hosts():
    resources, _, _ = generated(EGRESS, proxy=client(inbound=()))
    own = simulate(resources, Request(port=9080, address=IP, host="reviews:9080"))
    assert (own.listener, own.route_config, own.cluster) == (f"{IP}_9080", "9080", f"outbound|9080||{REVIEWS}")
    other = simulate(resources, Request(port=9080, address=IP, host="ratings:9080"))
    assert (other.virtual_host, other.cluster) == ("allow_any", "PassthroughCluster")
    manager = hcm_pb2.HttpConnectionManager()
    resources[LISTENER][f"{IP}_9080"].filter_chains[0].filters[0].typed_config.Unpack(manager)
    assert manager.HasField("route_config") and not manager.HasField("rds")


def test_an_inbound_port_keeps_its_address_from_an_egress_listener():
    resources, _, _ = generated(EGRESS)
    assert simulate(resources, Request(port=9080, address=IP, host="reviews:9080")).listener == "virtualInbound"
    assert f"{IP}_9080" not in resources[LISTENER]


def test_http_proxy_answers_each_port_as_its_egress_listener_would():
    resources, _, _ = generated(EGRESS)
    assert simulate(resources, Request(port=15001, address=IP, host="reviews:9080")).cluster == (
        f"outbound|9080||{REVIEWS}"
    )
    # ratings:9080 is not on the 9080 listener: the catch-all's ./* does not reach a port another listener owns.
    assert simulate(resources, Request(port=15001, address=IP, host="ratings:9080")).cluster == "PassthroughCluster"


def test_egress_bind_and_a_port_the_service_does_not_have():
    resources, _, _ = generated(EGRESS)
    mongo = simulate(resources, Request(port=27018, address="127.0.0.98", protocol="tcp"))
    assert (mongo.listener, mongo.cluster) == ("127.0.0.98_27018", f"outbound|27017||{MONGO}")
    # The catch-all still serves mongodb on its own port, on the proxy's address.
    catch_all = simulate(resources, Request(port=27017, address=IP, protocol="tcp"))
    assert catch_all.cluster == f"outbound|27017||{MONGO}"


def test_egress_listener_without_bind_takes_the_port_from_the_catch_all():
    resources, _, _ = generated(
        """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: client}
spec:
  workloadSelector: {labels: {app: client}}
  egress:
  - port: {number: 27017, protocol: TCP, name: mongo}
    hosts: [./reviews.default.svc.cluster.local]
  - hosts: ["./*"]
"""
    )
    listeners = [n for n in resources[LISTENER] if n.endswith("_27017")]
    assert listeners == [f"{IP}_27017"]
    # reviews has one port (9080): a listener on 27017 reaches it there.
    assert simulate(resources, Request(port=27017, address=IP, protocol="tcp")).cluster == (
        f"outbound|9080||{REVIEWS}"
    )


def test_transparent_capture_routes_a_port_from_its_egress_listener():
    proxy = client(inbound=(), capture=CaptureMode.TRANSPARENT)
    resources, snap, _ = generated(EGRESS, proxy=proxy)
    captured = simulate(resources, Request(port=9080, address="10.0.0.1", host="ratings:9080"))
    assert (captured.listener, captured.route_config) == ("0.0.0.0_9080", "9080")
    assert captured.cluster == "PassthroughCluster"
    scope = build_scope(proxy, snap)
    assert [e.port for e in scope.port_listeners] == [9080, 27018]
    assert scope.for_port(9080).services[0].hostname == REVIEWS
    assert scope.for_port(8080) is scope.catch_all


def test_egress_listener_on_a_unix_socket_serves_every_http_port_of_its_hosts():
    resources, _, _ = generated(
        """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: client}
spec:
  workloadSelector: {labels: {app: client}}
  egress:
  - port: {number: 0, protocol: HTTP, name: http-uds}
    bind: unix:///var/run/egress.sock
    hosts: [./ratings.default.svc.cluster.local]
  - hosts: ["./*"]
"""
    )
    listener = resources[LISTENER]["unix:///var/run/egress.sock_0"]
    assert listener.address.pipe.path == "/var/run/egress.sock"
    manager = hcm_pb2.HttpConnectionManager()
    listener.filter_chains[0].filters[0].typed_config.Unpack(manager)
    assert manager.route_config.name == "unix:///var/run/egress.sock"
    assert [v.name for v in manager.route_config.virtual_hosts] == [f"{RATINGS}:9080", "allow_any"]


def test_with_transparent_capture_only_none_capture_listeners_bind():
    """What ``build_listeners`` adds for a transparently captured proxy (see the module docstrings)."""
    proxy = client(inbound=(), capture=CaptureMode.TRANSPARENT)
    none_capture = """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: client}
spec:
  workloadSelector: {labels: {app: client}}
  ingress:
  - port: {number: 7002, protocol: TCP, name: tcp-own}
    captureMode: NONE
    defaultEndpoint: 127.0.0.1:17002
  - port: {number: 7003, protocol: TCP, name: tcp-redirected}
  egress:
  - port: {number: 9080, protocol: HTTP, name: http}
    captureMode: NONE
    hosts: [./reviews.default.svc.cluster.local]
  - port: {number: 27017, protocol: TCP, name: mongo}
    hosts: [./mongodb.default.svc.cluster.local]
  - hosts: ["./*"]
"""
    snap = snapshot(SERVICES + "---\n" + none_capture, workloads=WORKLOADS)
    scope = build_scope(proxy, snap)
    egress = build_egress_listeners(proxy, snap, scope, taken=set())
    assert [x.name for x in egress] == ["127.0.0.1_9080"]
    inbound = build_inbound_listeners(proxy, snap)
    assert [x.name for x in inbound] == ["0.0.0.0_7002"]
    assert [c.filter_chain_match.destination_port.value for c in inbound_chains(proxy, snap)] == [7003, 7003]


def test_an_egress_listener_with_nothing_to_expose_leaves_its_port_to_the_catch_all():
    resources, _, _ = generated(
        """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: client}
spec:
  workloadSelector: {labels: {app: client}}
  egress:
  - port: {number: 27017, protocol: TCP, name: mongo}
    hosts: [./nothing.example.com]
  - hosts: ["./*"]
"""
    )
    assert simulate(resources, Request(port=27017, address=IP, protocol="tcp")).cluster == f"outbound|27017||{MONGO}"


def test_inbound_route_configurations_follow_the_ports_served_through_rds():
    """What ``build_routes`` is to name for inbound HTTP: a Sidecar's ingress ports carry theirs inline."""
    snap = snapshot(SERVICES, workloads=WORKLOADS)
    assert [r.name for r in build_inbound_route_configs(client(), snap)] == ["inbound|9080||"]
    _, with_ingress, proxy = generated(INGRESS)
    assert build_inbound_route_configs(proxy, with_ingress) == []
