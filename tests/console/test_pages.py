"""The console's pages render with what a user needs on them, and nothing is fetched from elsewhere."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from tests.console.conftest import ConsoleMesh

pytestmark = pytest.mark.xdist_group("console")

STATIC = Path(__file__).resolve().parents[2] / "src" / "malla" / "console" / "static"


def test_home_leads_to_the_graph(console_mesh: ConsoleMesh) -> None:
    for path in ("/", "/console", "/console/"):
        response = console_mesh.get(path)
        assert response.status_code == 200 and response.url.path == "/console/graph"


def test_graph_page_loads_cytoscape_from_the_control_plane(console_mesh: ConsoleMesh) -> None:
    html = console_mesh.get("/console/graph").text
    assert '<div id="cy"' in html and 'id="edges"' in html and 'id="window"' in html
    scripts = re.findall(r'<script src="([^"]+)"', html)
    assert scripts == ["/console/static/vendor/cytoscape.min.js", "/console/static/common.js", "/console/static/graph.js"]
    for src in scripts:
        asset = console_mesh.get(src)
        assert asset.status_code == 200 and len(asset.content) > 500, src
    assert console_mesh.get("/console/static/console.css").status_code == 200


def test_list_pages_show_health_and_figures(console_mesh: ConsoleMesh) -> None:
    workloads = console_mesh.get("/console/workloads").text
    row = re.search(r'<tr><td><a href="/console/workloads/default/reviews">reviews</a></td><td>default</td><td>v2</td>.*?</tr>',
                    workloads)
    assert row is not None and "health-degraded" in row.group(0)
    services = console_mesh.get("/console/services").text
    assert "reviews.default.svc.cluster.local" in services and "health-failure" in services


def test_detail_pages_carry_what_their_script_asks_for(console_mesh: ConsoleMesh) -> None:
    html = console_mesh.get("/console/workloads/default/reviews").text
    assert 'data-kind="workload"' in html and 'data-namespace="default"' in html and 'data-name="reviews"' in html
    assert 'id="chart-inbound-latency"' in html and 'id="chart-outbound-rps"' in html
    service = console_mesh.get("/console/services/default/reviews").text
    assert 'id="chart-inbound-errors"' in service and 'id="chart-outbound-rps"' not in service


def test_proxies_config_and_traces_pages(console_mesh: ConsoleMesh) -> None:
    assert "No proxies are connected." in console_mesh.get("/console/proxies").text  # fake agents run no Envoy
    config = console_mesh.get("/console/config")
    assert config.status_code == 200 and 'id="config"' in config.text
    bad = console_mesh.get("/console/config", status="broken")
    assert bad.status_code == 400 and "use valid, warning or error" in bad.text
    traces = console_mesh.get("/console/traces").text
    assert '<select id="service">' in traces and "/console/static/traces.js" in traces
    trace = console_mesh.get("/console/traces/463ac35c9f6413ad48485a3953bb6124").text
    assert 'data-trace="463ac35c9f6413ad48485a3953bb6124"' in trace and 'id="waterfall"' in trace


def test_every_page_escapes_names(console_mesh: ConsoleMesh) -> None:
    html = console_mesh.get("/console/workloads/default/%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E").text
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


def test_no_page_or_script_reaches_outside_the_control_plane() -> None:
    for path in STATIC.glob("*.js"):
        urls = set(re.findall(r"https?://[^\s\"']+", path.read_text())) - {"http://www.w3.org/2000/svg"}  # SVG's namespace
        assert not urls, f"{path.name} names outside URLs: {urls}"
    assert not re.search(r"https?://", (STATIC / "console.css").read_text())


def test_vendored_cytoscape_is_the_version_its_readme_names() -> None:
    readme = (STATIC / "vendor" / "README.md").read_text()
    digest = re.search(r"sha256 of `cytoscape.min.js`: `([0-9a-f]{64})`", readme)
    assert digest is not None
    assert hashlib.sha256((STATIC / "vendor" / "cytoscape.min.js").read_bytes()).hexdigest() == digest.group(1)
    assert "3.35.0" in readme and "Permission is hereby granted" in (STATIC / "vendor" / "cytoscape.LICENSE").read_text()
