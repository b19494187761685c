"""Istio's networking.istio.io kinds."""
