"""Envoy as a process: find the binary, build its bootstrap, start and supervise it.

In: where the control plane listens and who the proxy is (node id, cluster,
metadata, locality). Out: a bootstrap (dict ready for JSON, or the Bootstrap
proto) and a running, supervised Envoy whose admin endpoints can be read.
Knows nothing of Istio's API and nothing of the xDS server's internals.
"""
