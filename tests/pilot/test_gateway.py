"""Gateways: listeners per server port, TLS termination, passthrough, binding rules."""

from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from malla.pilot.generate import generate
from malla.pilot.resources import LISTENER, ROUTE
from malla.pilot.simulate import Request, simulate

from tests.pilot.mesh import router, snapshot

BACKENDS = """
apiVersion: v1
kind: Service
metadata: {name: web, namespace: apps}
spec: {selector: {app: web}, ports: [{name: http, port: 8000}]}
---
apiVersion: v1
kind: Service
metadata: {name: secure, namespace: apps}
spec: {selector: {app: secure}, ports: [{name: https, port: 8443}]}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: public, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["apps/*.example.com"]
    tls: {httpsRedirect: true}
  - port: {number: 8080, name: http-open, protocol: HTTP}
    hosts: ["open.example.com"]
  - port: {number: 8443, name: https, protocol: HTTPS}
    hosts: ["apps/web.example.com"]
    tls: {mode: SIMPLE, credentialName: web-cert}
  - port: {number: 8443, name: tls-pass, protocol: TLS}
    hosts: ["secure.example.com"]
    tls: {mode: PASSTHROUGH}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: apps}
spec:
  hosts: [web.example.com]
  gateways: [istio-system/public]
  http: [{route: [{destination: {host: web}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: open, namespace: default}
spec:
  hosts: [open.example.com]
  gateways: [istio-system/public]
  http: [{route: [{destination: {host: web.apps.svc.cluster.local}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: secure, namespace: apps}
spec:
  hosts: [secure.example.com]
  gateways: [istio-system/public]
  tls:
  - match: [{sniHosts: [secure.example.com]}]
    route: [{destination: {host: secure}}]
"""
WEB = "outbound|8000||web.apps.svc.cluster.local"


def resources(extra=""):
    return generate(router(), snapshot(BACKENDS + extra))


def test_one_listener_per_port_with_istio_names():
    res = resources()
    assert list(res[LISTENER]) == ["0.0.0.0_8080", "0.0.0.0_8443"]
    assert list(res[ROUTE]) == ["http.8080", "https.8443.https.public.istio-system"]


def test_https_redirect_and_host_namespaces():
    res = resources()
    redirected = simulate(res, Request(port=8080, host="web.example.com"))
    assert redirected.direct_response == 301  # require_tls: ALL
    assert simulate(res, Request(port=8080, host="web.example.com", scheme="https")).cluster == WEB
    # open.example.com is admitted from any namespace and is not redirected.
    assert simulate(res, Request(port=8080, host="open.example.com:8080")).cluster == WEB


def test_tls_termination_with_a_credential_and_passthrough_by_sni():
    res = resources()
    web = simulate(res, Request(port=8443, host="web.example.com", scheme="https", tls=True, sni="web.example.com"))
    assert (web.route_config, web.cluster) == ("https.8443.https.public.istio-system", WEB)
    chain = next(c for c in res[LISTENER]["0.0.0.0_8443"].filter_chains if c.name.startswith("https."))
    ctx = tls_pb2.DownstreamTlsContext()
    chain.transport_socket.typed_config.Unpack(ctx)
    assert [s.name for s in ctx.common_tls_context.tls_certificate_sds_secret_configs] == ["kubernetes://web-cert"]
    assert not ctx.require_client_certificate.value
    secure = simulate(res, Request(port=8443, protocol="tcp", tls=True, sni="secure.example.com"))
    assert secure.cluster == "outbound|8443||secure.apps.svc.cluster.local"


def test_virtual_services_from_a_namespace_the_server_does_not_admit_are_ignored():
    extra = """
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: sneaky, namespace: default}
spec:
  hosts: [sneaky.example.com]
  gateways: [istio-system/public]
  http: [{route: [{destination: {host: web.apps.svc.cluster.local}}]}]
"""
    r = simulate(resources(extra), Request(port=8080, host="sneaky.example.com", scheme="https"))
    assert r.error == "no virtual host for 'sneaky.example.com' (404)"


def test_gateways_apply_only_to_routers_they_select():
    res = generate(router(labels={"istio": "egressgateway"}), snapshot(BACKENDS))
    assert res[LISTENER] == {}


def test_mutual_tls_server_requires_client_certificates():
    text = BACKENDS.replace(
        "tls: {mode: SIMPLE, credentialName: web-cert}", "tls: {mode: MUTUAL, credentialName: web-cert}"
    )
    res = generate(router(), snapshot(text))
    chain = next(c for c in res[LISTENER]["0.0.0.0_8443"].filter_chains if c.name.startswith("https."))
    ctx = tls_pb2.DownstreamTlsContext()
    chain.transport_socket.typed_config.Unpack(ctx)
    assert ctx.require_client_certificate.value
    validation = ctx.common_tls_context.combined_validation_context.validation_context_sds_secret_config
    assert validation.name == "kubernetes://web-cert-cacert"


def test_nothing_bound_answers_404():
    text = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: empty, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
"""
    res = generate(router(), snapshot(text))
    r = simulate(res, Request(port=80, host="anything"))
    assert (r.virtual_host, r.error) == ("blackhole:80", "no route matched (404)")
