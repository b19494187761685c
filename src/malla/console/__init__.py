"""The console (Kiali's job, on the API's port 20001): service graph, health, config, proxies, traces.

What comes in: the control plane's own API views (registered workloads,
proxy sync state, the config store's resources and problems: see
``views.ControlPlaneViews``), Istio's standard metrics scraped from every
workload's agent (``:15020/stats/prometheus``) and, in the browser, the
control plane's Zipkin API. The console never reaches into the control
plane's internals (an import-linter contract keeps it away from
``malla.pilot``, ``malla.xds``, ``malla.discovery`` and the server).

What goes out: JSON views (``/api/v1/graph``, ``/api/v1/services/{ns}/{name}``,
``/api/v1/workloads/{ns}/{name}``, ``/api/v1/validations``) and server-rendered
pages under ``/console/`` with a little JavaScript (Cytoscape.js, shipped in
``static/vendor``; no build step, nothing fetched at run time).

Theory of operation: the poller (``poller``) scrapes every few seconds and
stores each scrape as counter increases per target (``timeseries``); a view
asks for rates over a window, keeps each flow once (``traffic.effective``:
the destination proxy's report, else the source's) and sums them per edge
and node (``graph``, ``details``), with Kiali's health rules (``health``).
Istio's Grafana dashboards over the same metric names are built by
``grafana`` and shipped in ``malla/data/grafana``.
"""

from malla.console.mount import Console, mount_console
from malla.console.views import ControlPlaneViews

__all__ = ["Console", "ControlPlaneViews", "mount_console"]
