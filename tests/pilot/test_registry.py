from malla.pilot.protocol import Protocol
from malla.pilot.services import Health, Resolution
from malla.pilot.snapshot import MeshConfig

from tests.pilot.mesh import snapshot, workload

REVIEWS = """
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080, targetPort: 9080}, {name: grpc-api, port: 9090, targetPort: api}]
"""


def test_kubernetes_service_endpoints_are_the_matching_workloads():
    snap = snapshot(
        REVIEWS,
        workloads=[
            workload(
                "reviews-v1",
                "127.0.0.11",
                labels={"app": "reviews", "version": "v1"},
                ports={"http": 9080, "api": 7000},
            ),
            workload("ratings-v1", "127.0.0.12", labels={"app": "ratings"}),
        ],
    )
    svc = snap.registry.service("reviews.default.svc.cluster.local", namespace="default")
    assert [(p.name, p.port, p.protocol) for p in svc.ports] == [
        ("http", 9080, Protocol.HTTP),
        ("grpc-api", 9090, Protocol.GRPC),
    ]
    assert [(e.address, e.port) for e in snap.registry.endpoints_of(svc, 9080)] == [("127.0.0.11", 9080)]
    (grpc,) = snap.registry.endpoints_of(svc, 9090)
    assert grpc.port == 7000  # the named targetPort, looked up in the workload's ports
    assert grpc.service_account == "spiffe://cluster.local/ns/default/sa/default"
    assert grpc.tls_mode == "istio"


def test_short_names_resolve_as_kubernetes_dns_does():
    snap = snapshot(REVIEWS)
    fqdn = "reviews.default.svc.cluster.local"
    for name in ("reviews", "reviews.default", "reviews.default.svc", fqdn, "Reviews.default."):
        assert snap.registry.lookup(name, namespace="default").hostname == fqdn
    assert snap.registry.lookup("reviews", namespace="other") is None
    assert snap.registry.lookup("reviews.default", namespace="other").hostname == fqdn


def test_service_entry_with_dns_resolution_and_wildcards():
    snap = snapshot(
        """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external, namespace: default}
spec:
  hosts: [api.example.com]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{number: 443, name: https, protocol: HTTPS}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: wiki, namespace: default}
spec:
  hosts: ["*.wikipedia.org"]
  resolution: NONE
  ports: [{number: 443, name: https, protocol: HTTPS}]
"""
    )
    svc = snap.registry.lookup("en.wikipedia.org", namespace="default")
    assert svc.hostname == "*.wikipedia.org" and svc.mesh_external
    api = snap.registry.lookup("api.example.com", namespace="default")
    assert api.resolution is Resolution.DNS
    (ep,) = snap.registry.endpoints_of(api, 443)
    assert (ep.address, ep.port, ep.tls_mode) == ("api.example.com", 443, "disabled")


def test_service_entry_inline_endpoints_and_workload_entries():
    snap = snapshot(
        """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: vms, namespace: prod}
spec:
  hosts: [db.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 5432, name: tcp-pg, protocol: TCP, targetPort: 6432}]
  endpoints:
  - {address: 10.0.0.1, labels: {version: a}, locality: us/east/1, weight: 3}
  - {address: 10.0.0.2, ports: {tcp-pg: 7000}, serviceAccount: pg}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: vms-selected, namespace: prod}
spec:
  hosts: [db.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 5432, name: tcp-pg, protocol: TCP, targetPort: 6432}]
  workloadSelector: {labels: {app: db}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-3, namespace: prod}
spec: {address: 10.0.0.3, labels: {app: db}, serviceAccount: pg}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: elsewhere, namespace: other}
spec: {address: 10.0.0.4, labels: {app: db}}
"""
    )
    svc = snap.registry.service("db.internal", namespace="prod")
    eps = snap.registry.endpoints_of(svc, 5432)
    assert [(e.address, e.port, e.tls_mode) for e in eps] == [
        ("10.0.0.1", 6432, "disabled"),
        ("10.0.0.2", 7000, "istio"),
        ("10.0.0.3", 6432, "istio"),
    ]
    assert eps[0].locality == "us/east/1" and eps[0].weight == 3
    assert eps[1].service_account == "spiffe://cluster.local/ns/prod/sa/pg"
    # Two ServiceEntries for one host in one namespace: the first defines it, endpoints merge.
    assert snap.registry.problems == (
        "ServiceEntry prod/vms-selected: host db.internal is already defined by ServiceEntry prod/vms",
    )


def test_export_to_hides_services_from_other_namespaces():
    snap = snapshot(
        """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: private, namespace: team}
spec: {hosts: [private.example.com], exportTo: ["."], ports: [{number: 80, name: http}], resolution: DNS}
"""
    )
    assert snap.registry.service("private.example.com", namespace="team") is not None
    assert snap.registry.service("private.example.com", namespace="default") is None
    assert [s.hostname for s in snap.registry.visible_services("default")] == []


def test_self_registered_workloads_form_a_service_named_after_their_app():
    snap = snapshot(
        workloads=[
            workload("reviews-v1", "127.0.0.11", labels={"app": "reviews", "version": "v1"}),
            workload("reviews-v2", "127.0.0.12", labels={"app": "reviews", "version": "v2"}, healthy=False),
        ]
    )
    svc = snap.registry.lookup("reviews", namespace="default")
    assert svc.hostname == "reviews.default.svc.cluster.local"
    assert [(p.name, p.port, p.protocol) for p in svc.ports] == [("http", 9080, Protocol.HTTP)]
    healths = [e.health for e in snap.registry.endpoints_of(svc, 9080)]
    assert healths == [Health.HEALTHY, Health.UNHEALTHY]


def test_a_declared_service_takes_precedence_over_the_implicit_one():
    snap = snapshot(REVIEWS, workloads=[workload("reviews-v1", "127.0.0.11", labels={"app": "reviews"})])
    (svc,) = snap.registry.services
    assert svc.source == "Service default/reviews"


def test_bad_kubernetes_service_is_reported_not_fatal():
    snap = snapshot(
        """
apiVersion: v1
kind: Service
metadata: {name: broken}
spec: {ports: [{name: http, port: 0}]}
"""
    )
    assert snap.registry.services == ()
    assert snap.registry.problems == (
        "Service default/broken: spec.ports[0].port must be a port number (1-65535), got 0",
    )


def test_headless_and_external_name_services():
    snap = snapshot(
        """
apiVersion: v1
kind: Service
metadata: {name: db}
spec: {clusterIP: None, ports: [{name: tcp, port: 5432}]}
---
apiVersion: v1
kind: Service
metadata: {name: ext}
spec: {type: ExternalName, externalName: example.com, ports: [{name: http, port: 80}]}
"""
    )
    assert snap.registry.lookup("db", namespace="default").resolution is Resolution.PASSTHROUGH
    ext = snap.registry.lookup("ext", namespace="default")
    assert ext.resolution is Resolution.DNS
    assert [e.address for e in snap.registry.endpoints_of(ext, 80)] == ["example.com"]


def test_mesh_default_export_to_applies_to_services_that_do_not_say():
    text = REVIEWS + """
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: open, namespace: default}
spec: {hosts: [open.example.com], exportTo: ["*"], resolution: DNS, ports: [{number: 80, name: http}]}
"""
    snap = snapshot(text, mesh=MeshConfig(default_service_export_to=(".",)))
    assert [s.hostname for s in snap.registry.visible_services("other")] == ["open.example.com"]
    assert len(snap.registry.visible_services("default")) == 2
