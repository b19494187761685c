"""The agent: what runs beside every workload (Istio's pilot-agent and sidecar injector).

What comes in: the workload's name, labels, ports and command, and the
running control plane's addresses. What goes out: an Envoy sidecar
configured over xDS, the app started only once that sidecar is ready, the
workload registered while it is ready and withdrawn before it stops.
"""
