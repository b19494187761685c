"""Mesh DNS: istio-coredns' job, answering mesh names to workloads that have no sidecar settings.

What comes in: DNS queries (UDP and TCP) on the control plane's DNS port,
relayed by transparent workloads' agents, which add a hint saying which
namespace asks (``hints``). What goes out: for a mesh name, the service's
address; for anything else, what the host's resolver says.

- ``names`` (pure): a name seen from a namespace -> a mesh answer, NXDOMAIN
  (unknown names under the mesh domain never leave the mesh), or "not
  ours". Short names resolve as Kubernetes DNS would: ``reviews``,
  ``reviews.default``, ``reviews.default.svc`` and the FQDN, and
  ServiceEntry hosts. A service's answer is its own address (a cluster IP,
  ServiceEntry ``addresses``), else a stable virtual IP from 240.240.0.0/16
  (``malla.pilot.vips``) that transparent capture routes by original
  destination, else for headless/passthrough services its endpoints.
- ``forward``: the host's resolver for the rest (``getaddrinfo`` for A and
  AAAA, so ``/etc/hosts`` counts; the ``resolv.conf`` name servers for other
  types).
- ``server``: dnslib's UDP and TCP servers around both, reading the current
  ``MeshSnapshot`` at each query.
"""
