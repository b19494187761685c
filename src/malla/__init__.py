"""malla: a service mesh with Istio's architecture and API, a Python control plane and real Envoy."""

__version__ = "0.1.0"
