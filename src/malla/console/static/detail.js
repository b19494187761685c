// A service's or a workload's page: figures, charts over time and neighbours, refreshed every few seconds.
"use strict";
(function () {
  const m = window.malla;
  const { kind, namespace, name } = document.body.dataset;
  const api = "/api/v1/" + kind + "s/" + encodeURIComponent(namespace) + "/" + encodeURIComponent(name);
  const status = document.getElementById("detail-status");

  function cards(holder, t) {
    const card = (label, value) => m.el("div", { className: "card" }, [m.el("b", { text: value }), label]);
    holder.replaceChildren(card("requests/s", m.fmt(t.rps)), card("error %", m.fmt(t.errorPercent, 1)),
      card("p50 ms", m.fmt(t.p50Ms, 1)), card("p95 ms", m.fmt(t.p95Ms, 1)), card("p99 ms", m.fmt(t.p99Ms, 1)),
      card("mTLS %", m.fmt(t.mtlsPercent, 0)), m.el("div", { className: "card" }, [m.healthBadge(t.health), m.el("div", { text: "health" })]));
  }

  function charts(direction, points) {
    const pick = (field) => points.map((p) => [p.t, p[field]]);
    window.mallaChart(document.getElementById("chart-" + direction + "-rps"), { series: [{ name: "requests/s", colour: "#0066cc", points: pick("rps") }] });
    window.mallaChart(document.getElementById("chart-" + direction + "-errors"), { minMax: 1, series: [{ name: "error %", colour: "#c9190b", points: pick("errorPercent") }] });
    window.mallaChart(document.getElementById("chart-" + direction + "-latency"), { series: [
      { name: "p50", colour: "#3e8635", points: pick("p50Ms") },
      { name: "p95", colour: "#f0ab00", points: pick("p95Ms") },
      { name: "p99", colour: "#c9190b", points: pick("p99Ms") }] });
  }

  function neighbours(holder, items) {
    holder.replaceChildren(m.table(["Node", "Requests/s", "Error %", "p95 ms", "Health"], items.map((n) => [
      m.nodeLink(n.node), m.fmt(n.rps), m.fmt(n.errorPercent, 1), m.fmt(n.p95Ms, 1), m.healthBadge(n.health)]), "None in this window."));
  }

  function members(data) {
    const title = document.getElementById("members-title");
    const holder = document.getElementById("members");
    if (data.kind === "service") {
      title.textContent = "Workloads";
      holder.replaceChildren(m.table(["Workload"], data.workloads.map((id) => [m.nodeLink(id)]), "No registered workloads."));
    } else {
      title.textContent = "Instances";
      holder.replaceChildren(m.table(["Address", "Ports", "Labels", "Sidecar", "Healthy"], data.instances.map((i) => [
        i.address, Object.entries(i.ports || {}).map(([k, v]) => k + ":" + v).join(", "),
        Object.entries(i.labels || {}).map(([k, v]) => k + "=" + v).join(", "), i.sidecar ? "yes" : "no", i.healthy ? "yes" : "no"]),
      "Not registered (seen in traffic only)."));
    }
  }

  async function refresh() {
    try {
      const data = await m.getJSON(api);
      document.getElementById("health").replaceChildren(m.healthBadge(data.health));
      Object.entries(data.series).forEach(([direction, points]) => {
        cards(document.getElementById("cards-" + direction), data[direction]);
        charts(direction, points);
      });
      neighbours(document.getElementById("neighbours-inbound"), data.neighbours.inbound);
      neighbours(document.getElementById("neighbours-outbound"), data.neighbours.outbound);
      members(data);
      status.textContent = "last " + data.windowSeconds + " s \u00b7 updated " + m.clock(Date.now());
    } catch (err) {
      status.textContent = "cannot load: " + err.message;
    }
  }

  m.every(5000, refresh);
})();
