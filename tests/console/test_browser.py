"""A real browser draws the service graph: Cytoscape's nodes, mTLS locks and Kiali's colours."""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path

import pytest

from tests.console.browser import count_near, dump_dom, png_pixels, screenshot
from tests.console.conftest import ConsoleMesh

pytestmark = pytest.mark.xdist_group("console")

NODES = {
    "workload:default/productpage@v1", "workload:default/reviews@v1", "workload:default/reviews@v2",
    "workload:default/ratings@v1", "workload:default/details@v1", "service:default/productpage",
    "service:default/reviews", "service:default/ratings", "service:default/details",
}


def test_graph_page_draws_every_node_after_its_scripts_ran(console_mesh: ConsoleMesh, tmp_path: Path) -> None:
    dom = dump_dom(console_mesh.api + "/console/graph", profile=tmp_path / "profile")
    cy = re.search(r'<div id="cy"[^>]*>', dom)
    assert cy is not None, dom[:2000]
    tag = cy.group(0)
    assert 'data-drawn-nodes="9"' in tag, tag  # what Cytoscape holds, not just what the API sent
    ids = re.search(r'data-node-ids="([^"]*)"', tag)
    assert ids is not None and set(ids.group(1).split()) == NODES
    locks = {unescape(e) for e in re.findall(r'<span class="lock" data-edge="([^"]+)"', dom)}
    assert "service:default/reviews->workload:default/reviews@v2" in locks
    assert not any("details" in edge for edge in locks)  # the plaintext edge has no lock
    assert re.search(r"9 nodes, 7 edges with traffic · 5 metrics endpoints · updated", dom)
    rows = {unescape(e) for e in re.findall(r'<tr data-edge="([^"]+)"', dom)}
    assert "workload:default/productpage@v1->service:default/details" in rows
    assert len(rows) == 7


def test_graph_screenshot_shows_kiali_health_colours(console_mesh: ConsoleMesh, tmp_path: Path) -> None:
    # Kept in pytest's tmp_path (basetemp keeps the last runs) for a person to look at.
    shot = screenshot(console_mesh.api + "/console/graph", profile=tmp_path / "profile", out=tmp_path / "graph.png")
    width, height, pixels = png_pixels(shot)
    assert (width, height) == (1400, 1000)
    graph_area = (40, 160, 1000, 660)  # inside #cy, below the legend and left of the summary panel
    counts = {name: count_near(pixels, colour, box=graph_area, tolerance=30) for name, colour in
              (("healthy", "#3e8635"), ("degraded", "#f0ab00"), ("failure", "#c9190b"))}
    assert all(n > 40 for n in counts.values()), counts
