"""The control plane process (``malla up``): istiod on one machine.

What it owns: the config store fed by the config directory and by
``malla apply``, the registry of workloads that joined, the discovery loop
(debounce -> per-proxy snapshots), the xDS server, the HTTP API that the
CLI and the console use (port 20001), the monitoring endpoint (15014) and
the CA (``citadel``: 15012 xDS, renewals and remote agents' API over
mTLS, 15013 join tokens), each certificate signing on the CA's own thread and loop. The HTTP API runs on its own thread and event loop, so thousands of proxies
syncing on the xDS loop never starve ``malla status``.
"""
