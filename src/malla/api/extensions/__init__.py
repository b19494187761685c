"""Istio's extensions.istio.io kinds."""
