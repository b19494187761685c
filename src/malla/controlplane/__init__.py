"""The control plane process (``malla up``): istiod on one machine.

What it owns: the config store fed by the config directory and by
``malla apply``, the registry of workloads that joined, the discovery loop
(debounce -> per-proxy snapshots), the xDS server, the HTTP API that the
CLI and the console use (port 20001) and the monitoring endpoint (15014).
The HTTP API runs on its own thread and event loop, so thousands of proxies
syncing on the xDS loop never starve ``malla status``.
"""
