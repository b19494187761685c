"""Pilot's transport: the ADS server (SotW and Delta xDS) and its snapshot cache.

In: per-node snapshots `{type_url: {name: Envoy proto}}` from the control
plane (`SnapshotCache.set_snapshot`), and Envoy's discovery requests.
Out: responses on the wire in make-before-break order, and a status view per
proxy (SYNCED / STALE / NOT SENT / REJECTED with Envoy's reason).

Layers, inside out: `resources` (type URLs, push order, content-hash
versions), `references` (what a snapshot must contain), `protocol` with
`sotw` and `delta` (sans-IO state machines per stream), `cache` (shared
serialization), `server` (the grpc.aio adapter), `runner` (the server on
its own loop and thread). Knows nothing of Istio's API: translation lives in
`malla.pilot`.
"""
