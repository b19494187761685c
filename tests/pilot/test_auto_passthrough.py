"""AUTO_PASSTHROUGH gateway servers: mesh mTLS forwarded by Istio's SNI, with no VirtualService."""

from envoy.config.cluster.v3 import cluster_pb2

from malla.pilot import names
from malla.pilot.auto_passthrough import ISTIO_MTLS_ALPNS, build_sni_dnat_clusters
from malla.pilot.generate import generate
from malla.pilot.resources import CLUSTER, LISTENER
from malla.pilot.simulate import Request, simulate

from tests.pilot.mesh import router, sidecar, snapshot, workload

REVIEWS = "reviews.default.svc.cluster.local"
CONFIG = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets: [{name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external, namespace: default}
spec:
  hosts: [api.example.local]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{number: 443, name: tls, protocol: TLS}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: cross-network, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 15443, name: tls, protocol: TLS}
    tls: {mode: AUTO_PASSTHROUGH}
    hosts: [HOSTS]
"""


def gateway_resources(hosts='"*.local"'):
    snap = snapshot(
        CONFIG.replace("HOSTS", hosts),
        workloads=[
            workload("reviews-v2", "127.0.0.81", labels={"app": "reviews", "version": "v2"}),
            workload("ratings", "127.0.0.82", namespace="other"),
        ],
    )
    proxy = router()
    resources = generate(proxy, snap)
    return resources, snap, proxy


def sni(port, subset, host):
    return names.format_sni(names.Direction.OUTBOUND, port=port, subset=subset, host=host)


def test_each_service_port_and_subset_is_reached_by_its_istio_sni():
    resources, _, _ = gateway_resources()
    for subset in ("", "v2"):
        result = simulate(resources, Request(port=15443, protocol="tcp", tls=True, sni=sni(9080, subset, REVIEWS)))
        assert (result.listener, result.cluster) == ("0.0.0.0_15443", sni(9080, subset, REVIEWS))
    other = sni(9080, "", "ratings.other.svc.cluster.local")
    assert simulate(resources, Request(port=15443, protocol="tcp", tls=True, sni=other)).cluster == other
    unknown = simulate(resources, Request(port=15443, protocol="tcp", tls=True, sni="reviews.example.com"))
    assert unknown.error == "no filter chain matched (the connection is closed)"


def test_only_mesh_services_the_hosts_cover_and_only_istio_alpn():
    resources, _, _ = gateway_resources('"default/*"')
    chains = resources[LISTENER]["0.0.0.0_15443"].filter_chains
    assert sorted(c.name for c in chains) == [sni(9080, "", REVIEWS), sni(9080, "v2", REVIEWS)]  # no ratings, no SE
    assert all(list(c.filter_chain_match.application_protocols) == list(ISTIO_MTLS_ALPNS) for c in chains)


def test_sni_dnat_clusters_share_endpoints_and_carry_no_tls():
    resources, snap, proxy = gateway_resources()
    dnat = {name: c for name, c in resources[CLUSTER].items() if name.startswith("outbound_.")}
    assert sorted(dnat) == sorted(
        [sni(9080, "", REVIEWS), sni(9080, "v2", REVIEWS), sni(9080, "", "ratings.other.svc.cluster.local")]
    )
    cluster = dnat[sni(9080, "v2", REVIEWS)]
    assert cluster.type == cluster_pb2.Cluster.EDS
    assert cluster.eds_cluster_config.service_name == f"outbound|9080|v2|{REVIEWS}"
    assert not cluster.transport_socket_matches and not cluster.HasField("transport_socket")
    assert resources[CLUSTER][f"outbound|9080|v2|{REVIEWS}"].transport_socket_matches  # the gateway's own: mTLS


def test_sidecars_get_no_sni_dnat_clusters():
    _, snap, _ = gateway_resources()
    client = sidecar("client")
    assert build_sni_dnat_clusters(client, snap, list(generate(client, snap)[CLUSTER].values())) == []
