"""Istio's security.istio.io kinds."""
