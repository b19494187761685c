"""The console as a whole: its metrics store, poller and routes, mounted into the API app.

``mount_console(app, views)`` adds the console's JSON API, pages and static
files to the control plane's Starlette app and a tiny middleware that starts
the metrics poller on the API's loop with the first request the app serves
(the API runs with lifespan off, and the poller must live exactly as long
as the API's loop).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from malla.console.pages import page_routes
from malla.console.poller import MetricsPoller
from malla.console.routes import api_routes, validations_json
from malla.console.timeseries import MetricsStore
from malla.console.views import ControlPlaneViews

STATIC_DIR = Path(__file__).resolve().parent / "static"


class Console:
    def __init__(self, views: ControlPlaneViews, *, interval: float = 5.0, window: float = 60.0,
                 history: float = 900.0, chart_span: float = 600.0, chart_step: float = 10.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.views = views
        self.clock = clock
        self.store = MetricsStore(history=history)
        self.poller = MetricsPoller(views.workloads, targets=views.targets, store=self.store, interval=interval,
                                    clock=clock)
        self.window = window
        self.chart_span = chart_span
        self.chart_step = max(chart_step, interval)

    def scrape_status(self) -> dict[str, Any]:
        return {
            "intervalSeconds": self.poller.interval, "rounds": self.poller.rounds,
            "targets": self.store.targets(), "errors": dict(sorted(self.poller.errors.items())),
        }

    def validations(self) -> dict[str, Any]:
        return validations_json(self)


class _StartPoller:
    def __init__(self, app: ASGIApp, *, poller: MetricsPoller) -> None:
        self.app = app
        self.poller = poller

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.poller.ensure_started()
        await self.app(scope, receive, send)


def mount_console(app: Starlette, views: ControlPlaneViews, **options: Any) -> Console:
    """Add the console to ``app`` (before it serves); returns it (tests read its store)."""
    console = Console(views, **options)
    app.router.routes.extend(api_routes(console))
    app.router.routes.extend(page_routes(console))
    app.router.routes.append(Mount("/console/static", StaticFiles(directory=STATIC_DIR), name="console-static"))
    app.add_middleware(_StartPoller, poller=console.poller)
    return console
