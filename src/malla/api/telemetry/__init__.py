"""Istio's telemetry.istio.io kinds."""
