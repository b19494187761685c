"""Typed models of Istio's configuration API (Galley's schema).

What comes in: plain dicts decoded from YAML. What goes out: frozen pydantic
models, one per Istio message, and ``Resource`` envelopes
(apiVersion/kind/metadata/spec). Pure: no I/O, no environment, no clock.
``kinds`` maps each (group, kind) to its spec model and served versions.
"""
