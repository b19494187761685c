"""Pilot: the service registry and the pure translation of mesh config into Envoy config.

What comes in: a frozen ``MeshSnapshot`` (Istio configs, the registry built
from ServiceEntry/WorkloadEntry, Kubernetes Services and self-registered
workloads, and one ``MeshConfig`` holding every tunable) and a ``Proxy``.
What goes out: ``generate(proxy, snapshot) -> {type_url: {name: proto}}``,
sorted and deterministic, checked by ``consistency`` before it is served.
Nothing here does I/O, reads the environment or the clock, or knows gRPC.

Names are Istio's (``names``): clusters ``outbound|9080|v2|reviews.default.svc.cluster.local``
and ``inbound|9080||``, listeners ``ADDRESS_PORT``, ``virtualInbound``.

Listener layout on one machine without iptables (explicit capture, the default)
--------------------------------------------------------------------------------
Each workload has its own address ``IP`` (a loopback address such as
127.0.0.5), which is what the registry lists as its endpoints' address; its
app listens elsewhere (``Proxy.app_address``, e.g. 127.0.0.1, on its own
``app_port``).

Inbound: one listener, ``virtualInbound``, binds ``IP:PORT`` for every port
the workload serves (the first as its address, the others as additional
addresses). Filter chains are picked by destination port and, following
PeerAuthentication, by transport (Istio mTLS and/or plaintext); HTTP ports
go through an HTTP connection manager with route configuration
``inbound|PORT||``, others through tcp_proxy, both to cluster
``inbound|PORT||`` -> ``app_address:app_port``.

Outbound, HTTP: one listener ``IP_15001`` (``MeshConfig.outbound_port``)
that the app uses as its HTTP proxy (``HTTP_PROXY=http://IP:15001``). Its
route configuration, named ``15001`` as Istio names an HTTP_PROXY egress
listener's, has a virtual host per HTTP service port with the names a
client may use: ``reviews:9080``, ``reviews.default:9080``,
``reviews.default.svc:9080``, the FQDN and VIPs with the port (without it too
for port 80), like Istio's sidecar RDS; then ``allow_any`` (``*`` to
``PassthroughCluster``, a dynamic forward proxy resolving the Host header)
or ``block_all`` (502) per the outbound traffic policy.

Outbound, TCP: each non-HTTP service port gets a listener ``IP_PORT`` on the
workload's own address; the app reaches ``mongodb:27017`` when mesh DNS
answers the workload's own address for mesh names. TLS/HTTPS ports route by
SNI, so several services can share one; a plain TCP port belongs to the
first service by host name.

A Sidecar resource adds Istio's own listeners: ``ingress`` ports replace the
registered ones (``BIND_PORT`` listeners, or chains of ``virtualInbound``,
to each port's ``defaultEndpoint``, see ``sidecar_ingress``), and an
``egress`` listener with a port gets ``BIND_PORT`` (default: the proxy's
address) for its hosts only (``listeners_egress``).

Gateways (router proxies) get Istio's layout: ``0.0.0.0_PORT`` per Gateway
server port, route configurations ``http.PORT`` and
``https.PORT.NAME.GATEWAY.NAMESPACE``.

Transparent capture (``CaptureMode.TRANSPARENT``, iptables/nftables in a
network namespace) gets Istio's own layout: ``virtualOutbound`` on 15001
handing connections to non-binding ``0.0.0.0_9080`` (route configuration
``9080``) and ``VIP_PORT`` listeners, ``virtualInbound`` on 15006 with the
original destination restored, and ORIGINAL_DST ``PassthroughCluster`` and
``InboundPassthroughCluster``.
"""
