// The live service graph: polls /api/v1/graph and draws it with Cytoscape.js.
"use strict";
(function () {
  const m = window.malla;
  const container = document.getElementById("cy");
  const status = document.getElementById("graph-status");
  const summary = document.getElementById("summary");
  const windowSelect = document.getElementById("window");
  const TCP = "#0066cc";
  const IDLE = "#c7c7c7";
  const LOCK = '<svg viewBox="0 0 16 16" aria-label="mTLS"><path d="M4.5 7V5a3.5 3.5 0 0 1 7 0v2" fill="none" stroke="#151515" stroke-width="1.8"/>' +
    '<rect x="2.5" y="7" width="11" height="8" rx="1.5" fill="#151515"/><circle cx="8" cy="11" r="1.3" fill="#fff"/></svg>';
  let cy = null;
  let shape = "";
  let selected = null;
  let last = null;

  const locks = m.el("div", { id: "locks" });
  container.appendChild(locks);

  document.getElementById("legend").replaceChildren(
    ...Object.entries({ Healthy: "Healthy", Degraded: "Degraded", Failure: "Failure", NA: "No traffic" }).map(([k, label]) =>
      m.el("span", {}, [m.el("i", { style: "background:" + m.colours[k] }), label])),
    m.el("span", {}, [m.el("i", { style: "background:" + TCP }), "TCP"]),
  );

  const style = [
    { selector: "node", style: {
      "label": "data(label)", "text-wrap": "wrap", "text-valign": "bottom", "text-margin-y": 5, "font-size": 13,
      "font-family": "DejaVu Sans, Liberation Sans, sans-serif", "color": "#151515",
      "background-color": "#ffffff", "border-width": 3, "border-color": "data(colour)", "width": 38, "height": 38,
      "text-background-color": "#ffffff", "text-background-opacity": 0.8, "text-background-padding": 1 } },
    { selector: "node[kind = 'workload']", style: { "shape": "ellipse" } },
    { selector: "node[kind = 'service']", style: { "shape": "triangle", "background-color": "#e7f1fa" } },
    { selector: "node[kind = 'unknown']", style: { "shape": "diamond" } },
    { selector: "node[?idle]", style: { "border-style": "dashed", "opacity": 0.75 } },
    { selector: "edge", style: {
      "width": 2, "curve-style": "bezier", "line-color": "data(colour)", "target-arrow-color": "data(colour)",
      "target-arrow-shape": "triangle", "label": "data(label)", "font-size": 12, "color": "#151515", "text-wrap": "wrap",
      "font-family": "DejaVu Sans, Liberation Sans, sans-serif",
      "text-background-color": "#ffffff", "text-background-opacity": 0.9, "text-background-padding": 2 } },
    { selector: "edge[?idle]", style: { "line-style": "dashed", "width": 1 } },
    { selector: ":selected", style: { "overlay-color": "#0066cc", "overlay-opacity": 0.15, "overlay-padding": 6 } },
  ];

  function edgeColour(e) {
    if (e.idle) return IDLE;
    if (e.protocol === "tcp") return TCP;
    return m.colours[e.health] || m.colours.NA;
  }

  function elements(data) {
    const nodes = data.nodes.map((n) => ({ group: "nodes", data: Object.assign({}, n, { colour: m.colours[n.health] || m.colours.NA }) }));
    const edges = data.edges.map((e) => ({ group: "edges", data: Object.assign({}, e, { colour: edgeColour(e) }) }));
    return nodes.concat(edges);
  }

  // Layered left to right, as Kiali draws traffic: a node's column is its longest path from a caller.
  function positions() {
    const ids = cy.nodes().map((n) => n.id()).sort();
    const depth = new Map(ids.map((id) => [id, 0]));
    for (let round = 0; round < ids.length; round++) {
      let moved = false;
      cy.edges().forEach((e) => {
        const want = depth.get(e.source().id()) + 1;
        if (want > depth.get(e.target().id()) && want < ids.length) { depth.set(e.target().id(), want); moved = true; }
      });
      if (!moved) break;
    }
    const columns = new Map();
    ids.forEach((id) => { const d = depth.get(id); if (!columns.has(d)) columns.set(d, []); columns.get(d).push(id); });
    const y = new Map();
    const out = {};
    [...columns.keys()].sort((a, b) => a - b).forEach((d) => {
      const column = columns.get(d);
      const rank = (id) => {
        const ys = cy.getElementById(id).incomers("node").map((n) => y.get(n.id())).filter((v) => v !== undefined);
        return ys.length ? ys.reduce((a, b) => a + b, 0) / ys.length : 0;
      };
      column.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
      column.forEach((id, i) => {
        y.set(id, (i - (column.length - 1) / 2) * 120);
        out[id] = { x: d * 200, y: y.get(id) };
      });
    });
    return out;
  }

  function layout() {
    const at = positions();
    cy.layout({ name: "preset", positions: (node) => at[node.id()], animate: false }).run();
    cy.fit(undefined, 50);
    if (cy.zoom() > 1.1) { cy.zoom(1.1); cy.center(); }
  }

  function placeLocks() {
    locks.replaceChildren();
    if (!cy) return;
    cy.edges("[?mtls]").forEach((edge) => {
      const p = edge.renderedMidpoint();
      const label = edge.renderedBoundingBox({ includeNodes: false, includeEdges: false, includeLabels: true });
      const holder = m.el("span", { className: "lock", "data-edge": edge.id(), title: "mTLS " + m.fmt(edge.data("mtlsPercent"), 0) + "%" });
      holder.innerHTML = LOCK;
      const svg = holder.firstChild;
      // Left of the label, where no other edge's figures sit.
      svg.style.left = ((label.w > 0 ? label.x1 : p.x) - 18) + "px";
      svg.style.top = (p.y - 8) + "px";
      locks.appendChild(holder);
    });
  }

  function dl(pairs) {
    return m.el("dl", {}, pairs.flatMap(([k, v]) => [m.el("dt", { text: k }), m.el("dd", {}, [typeof v === "string" ? document.createTextNode(v) : v])]));
  }

  function figures(t) {
    return [["Requests/s", m.fmt(t.rps)], ["Error %", m.fmt(t.errorPercent, 1)], ["p50 / p95 / p99 ms",
      m.fmt(t.p50Ms, 1) + " / " + m.fmt(t.p95Ms, 1) + " / " + m.fmt(t.p99Ms, 1)], ["mTLS %", m.fmt(t.mtlsPercent, 0)],
      ["Responses", Object.entries(t.responses || {}).map(([k, v]) => k + ": " + m.fmt(v)).join(", ") || "-"]];
  }

  function showSummary() {
    if (!selected || !last) {
      summary.replaceChildren(m.el("p", { className: "muted", text: "Select a node or an edge." }));
      return;
    }
    const node = last.nodes.find((n) => n.id === selected);
    const edge = last.edges.find((e) => e.id === selected);
    if (node) {
      const parts = [m.el("h3", {}, [m.nodeLink(node.id)]), m.healthBadge(node.health),
        dl([["Kind", node.kind], ["Instances", String(node.instances)], ["Host", node.host || "-"]])];
      if (node.kind !== "unknown") parts.push(m.el("h3", { text: "Inbound" }), dl(figures(node.inbound)));
      if (node.kind !== "service") parts.push(m.el("h3", { text: "Outbound" }), dl(figures(node.outbound)));
      summary.replaceChildren(...parts);
    } else if (edge) {
      summary.replaceChildren(m.el("h3", {}, [m.nodeLink(edge.source), " \u2192 ", m.nodeLink(edge.target)]),
        m.healthBadge(edge.health), dl([["Protocol", edge.protocol], ["mTLS", edge.mtls ? "yes" : "no"]].concat(figures(edge))));
    } else {
      selected = null;
      showSummary();
    }
  }

  function edgeTable(data) {
    const tbody = document.querySelector("#edges tbody");
    const rows = data.edges.filter((e) => !e.idle).map((e) => m.el("tr", { "data-edge": e.id }, [
      m.el("td", {}, [m.nodeLink(e.source)]), m.el("td", {}, [m.nodeLink(e.target)]), m.el("td", { text: e.protocol }),
      m.el("td", { text: e.protocol === "tcp" ? e.label : m.fmt(e.rps) }), m.el("td", { text: m.fmt(e.errorPercent, 1) }),
      m.el("td", { text: m.fmt(e.p95Ms, 1) }), m.el("td", { text: e.mtls ? "yes" : "no" }),
      m.el("td", {}, [m.healthBadge(e.health)])]));
    tbody.replaceChildren(...(rows.length ? rows : [m.el("tr", {}, [m.el("td", { className: "empty", colspan: "8", text: "No traffic in this window." })])]));
  }

  function draw(data) {
    const els = elements(data);
    const ids = els.map((e) => e.data.id).sort().join(" ");
    if (!cy) {
      cy = cytoscape({ container: container, elements: els, style: style, wheelSensitivity: 0.3, minZoom: 0.2, maxZoom: 3 });
      cy.on("render", () => window.requestAnimationFrame(placeLocks));
      cy.on("tap", (evt) => { selected = evt.target === cy ? null : evt.target.id(); showSummary(); });
      cy.on("dbltap", "node", (evt) => { const url = evt.target.data("url"); if (url) window.location.href = url; });
      layout();
    } else if (ids !== shape) {
      cy.elements().remove();
      cy.add(els);
      layout();
    } else {
      els.forEach((e) => cy.getElementById(e.data.id).data(e.data));
    }
    shape = ids;
    container.dataset.nodeIds = data.nodes.map((n) => n.id).join(" ");
    container.dataset.edgeIds = data.edges.map((e) => e.id).join(" ");
    container.dataset.drawnNodes = String(cy.nodes().length);
    placeLocks();
  }

  async function refresh() {
    try {
      const data = await m.getJSON("/api/v1/graph?window=" + encodeURIComponent(windowSelect.value));
      last = data;
      draw(data);
      edgeTable(data);
      showSummary();
      const failing = Object.keys(data.scrape.errors || {}).length;
      status.textContent = data.nodes.length + " nodes, " + data.edges.filter((e) => !e.idle).length + " edges with traffic \u00b7 " +
        data.scrape.targets.length + " metrics endpoints" + (failing ? " (" + failing + " not answering)" : "") +
        " \u00b7 updated " + m.clock(Date.now());
    } catch (err) {
      status.textContent = "cannot load the graph: " + err.message;
    }
  }

  windowSelect.addEventListener("change", refresh);
  m.every(5000, refresh);
})();
