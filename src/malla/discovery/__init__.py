"""The discovery service: what joins config changes to pushes (istiod's DiscoveryServer).

What comes in: change events from the config store and the registry. What
goes out: one merged push request per quiet period (debounce), turned into
new per-proxy snapshots for the xDS cache. The debouncer is sans-IO with an
injected clock; the asyncio driver around it is thin.
"""
