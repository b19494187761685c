"""ServiceEntry, DestinationRule and EnvoyFilter analyzers on small inputs."""

from __future__ import annotations

from tests.analysis.conftest import findings, pairs


def service_entry(name: str, *, protocol: str = "TCP", addresses: str = "", export: str = "", ns: str = "default") -> str:
    return (
        f"---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n"
        f"  hosts: [db.example.com]\n  ports: [{{number: 5432, name: db, protocol: {protocol}}}]\n"
        + (f"  addresses: [{addresses}]\n" if addresses else "")
        + (f"  exportTo: [\"{export}\"]\n" if export else "")
    )


def test_tcp_service_entry_without_addresses() -> None:
    text = service_entry("db") + service_entry("db2", addresses="10.0.0.9") + service_entry("web", protocol="HTTP")
    found = findings(text, "serviceentry.Analyzer")
    assert pairs(found) == [("IST0134", "ServiceEntry default/db")]
    dns = {"defaultConfig": {"proxyMetadata": {"ISTIO_META_DNS_CAPTURE": "true", "ISTIO_META_DNS_AUTO_ALLOCATE": "true"}}}
    assert findings(text, "serviceentry.Analyzer", mesh_config=dns) == []


def test_service_entries_disagreeing_on_a_port_protocol() -> None:
    text = service_entry("a", addresses="10.0.0.1") + service_entry("b", protocol="TLS", addresses="10.0.0.1")
    found = findings(text, "serviceentry.ConflictingServiceEntryProtocolAnalyzer")
    assert pairs(found) == [("IST0177", "ServiceEntry default/a"), ("IST0177", "ServiceEntry default/b")]
    assert found[0].message == (
        'Multiple ServiceEntries (default/a, default/b) define the same host "db.example.com" and port 5432 '
        "with conflicting protocols (TCP, TLS)."
    )
    separate = service_entry("a", export=".") + service_entry("b", protocol="TLS", export=".", ns="other")
    assert findings(separate, "serviceentry.ConflictingServiceEntryProtocolAnalyzer") == []


DR = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: db}
spec:
  host: db.example.com
  trafficPolicy:
    tls: {mode: SIMPLE}
    portLevelSettings:
    - port: {number: 5432}
      tls: {mode: MUTUAL, caCertificates: /etc/ca.pem}
    - port: {number: 5433}
      tls: {mode: MUTUAL}
  subsets:
  - {name: primary, labels: {role: primary}}
"""


def test_tls_origination_without_ca_certificates() -> None:
    found = findings(DR, "destinationrule.CaCertificateAnalyzer")
    assert [(d.code, d.field) for d in found] == [
        ("IST0128", "spec.trafficPolicy.tls"),
        ("IST0129", "spec.trafficPolicy.portLevelSettings[1].tls"),
    ]
    assert found[1].message == (
        "DestinationRule default/db in namespace default has TLS mode set to MUTUAL but no caCertificates are set "
        "to validate server identity for host: db.example.com at port number:5433"
    )


def test_destination_rule_host_and_subsets_must_select_something() -> None:
    assert [d.message for d in findings(DR, "destinationrule.SubsetSelectPodAnalyzer")] == [
        "The host db.example.com defined in the DestinationRule does not match any services in the mesh."
    ]
    text = DR + service_entry("db", addresses="10.0.0.1")
    assert [d.message for d in findings(text, "destinationrule.SubsetSelectPodAnalyzer")] == [
        "The Subset primary defined in the DestinationRule does not select any pods. Which may lead to 503 UH (NoHealthyUpstream)."
    ]
    pod = "---\napiVersion: v1\nkind: Pod\nmetadata: {name: db-0, labels: {role: primary}}\n"
    assert findings(text + pod, "destinationrule.SubsetSelectPodAnalyzer") == []


def envoy_filter(name: str, patches: str, priority: int | None = None) -> str:
    prio = f"  priority: {priority}\n" if priority is not None else ""
    return f"---\napiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {{name: {name}}}\nspec:\n{prio}  configPatches:\n{patches}"


def test_envoy_filter_operations() -> None:
    insert = "  - applyTo: HTTP_FILTER\n    patch: {operation: INSERT_BEFORE, value: {name: my.lua}}\n"
    route_add = "  - applyTo: HTTP_ROUTE\n    patch: {operation: ADD, value: {name: r}}\n"
    cluster_replace = "  - applyTo: CLUSTER\n    patch: {operation: REPLACE, value: {name: c}}\n"
    text = envoy_filter("relative", insert) + envoy_filter("ordered", insert, priority=5) + envoy_filter("misused", route_add + cluster_replace)
    found = findings(text, "envoyfilter.EnvoyPatchAnalyzer")
    assert [(d.resource, d.code) for d in found] == [
        ("EnvoyFilter default/misused", "IST0152"),
        ("EnvoyFilter default/misused", "IST0153"),
        ("EnvoyFilter default/relative", "IST0151"),
    ]


def test_negative_status_condition_is_surfaced() -> None:
    text = service_entry("db", addresses="10.0.0.1") + (
        "status:\n  conditions:\n  - {type: istio.io/WaypointBound, status: \"False\", reason: NoWaypoint, message: waypoint missing}\n"
        "  - {type: example.com/Other, status: \"False\"}\n"
    )
    found = findings(text, "conditions.ConditionAnalyzer")
    assert [d.message for d in found] == [
        "A condition with a negative status is present: type=istio.io/WaypointBound, reason=NoWaypoint, message=waypoint missing."
    ]
