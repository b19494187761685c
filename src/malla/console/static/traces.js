// Traces through the control plane's Zipkin API (/api/v2): search by service, and one trace as a waterfall.
"use strict";
(function () {
  const m = window.malla;
  // No red: a red outline marks a span with an error.
  const PALETTE = ["#0066cc", "#3e8635", "#8476d1", "#009596", "#ec7a08", "#5752d1", "#b8bbbe", "#f4c145"];

  function colourOf(service) {
    let h = 0;
    for (const ch of service || "") h = (h * 31 + ch.charCodeAt(0)) >>> 0;
    return PALETTE[h % PALETTE.length];
  }

  function serviceOf(span) {
    return (span.localEndpoint && span.localEndpoint.serviceName) || "unknown";
  }

  function isError(span) {
    const tags = span.tags || {};
    return "error" in tags || Number(tags["http.status_code"]) >= 500;
  }

  function unavailable(err) {
    return err.status === 404 ? "the trace collector is not available on this control plane" : err.message;
  }

  function summarize(spans) {
    const start = Math.min(...spans.map((s) => s.timestamp || Infinity));
    const end = Math.max(...spans.map((s) => (s.timestamp || 0) + (s.duration || 0)));
    const ids = new Set(spans.map((s) => s.id));
    const root = spans.find((s) => !s.parentId || !ids.has(s.parentId)) || spans[0];
    return { id: spans[0].traceId, root: root, start: start, duration: end - start,
      services: [...new Set(spans.map(serviceOf))].sort(), errors: spans.filter(isError).length, spans: spans.length };
  }

  async function searchPage() {
    const select = document.getElementById("service");
    const statusLine = document.getElementById("traces-status");
    const wanted = new URLSearchParams(window.location.search).get("service");
    try {
      const services = await m.getJSON("/api/v2/services");
      select.replaceChildren(...services.map((s) => m.el("option", { value: s, text: s })));
      if (wanted) select.value = wanted;
      statusLine.textContent = services.length ? "" : "no traces collected yet";
    } catch (err) {
      statusLine.textContent = unavailable(err);
      return;
    }
    async function search() {
      const limit = document.getElementById("limit").value || "20";
      const url = "/api/v2/traces?serviceName=" + encodeURIComponent(select.value) + "&limit=" + encodeURIComponent(limit) + "&lookback=3600000";
      try {
        const traces = (await m.getJSON(url)).filter((t) => t.length).map(summarize).sort((a, b) => b.start - a.start);
        const tbody = document.querySelector("#traces tbody");
        const rows = traces.map((t) => m.el("tr", {}, [
          m.el("td", {}, [m.el("a", { href: "/console/traces/" + encodeURIComponent(t.id), text: t.id })]),
          m.el("td", { text: serviceOf(t.root) + ": " + (t.root.name || "") }), m.el("td", { text: t.services.join(", ") }),
          m.el("td", { text: String(t.spans) }), m.el("td", { text: m.fmt(t.duration / 1000, 1) }),
          m.el("td", { text: new Date(t.start / 1000).toLocaleString([], { hour12: false }) }),
          m.el("td", { text: t.errors ? String(t.errors) : "-" })]));
        tbody.replaceChildren(...(rows.length ? rows : [m.el("tr", {}, [m.el("td", { className: "empty", colspan: "7", text: "No traces for this service in the last hour." })])]));
        statusLine.textContent = traces.length + " traces";
      } catch (err) {
        statusLine.textContent = unavailable(err);
      }
    }
    document.getElementById("search").addEventListener("click", search);
    if (select.value) search();
  }

  function ordered(spans) {
    const children = new Map();
    const ids = new Set(spans.map((s) => s.id));
    spans.forEach((s) => {
      const parent = s.parentId && ids.has(s.parentId) ? s.parentId : "";
      if (!children.has(parent)) children.set(parent, []);
      children.get(parent).push(s);
    });
    const out = [];
    const seen = new Set();
    (function walk(parent, depth) {
      (children.get(parent) || []).sort((a, b) => (a.timestamp || 0) - (b.timestamp || 0)).forEach((s) => {
        if (seen.has(s)) return;  // a span that shares client and server halves under one id appears once
        seen.add(s);
        out.push([s, depth]);
        walk(s.id, depth + 1);
      });
    })("", 0);
    return out;
  }

  async function tracePage(traceId) {
    const statusLine = document.getElementById("trace-status");
    const holder = document.getElementById("waterfall");
    const tags = document.getElementById("span-tags");
    let spans;
    try {
      spans = await m.getJSON("/api/v2/trace/" + encodeURIComponent(traceId));
    } catch (err) {
      statusLine.textContent = unavailable(err);
      return;
    }
    const t = summarize(spans);
    const total = Math.max(t.duration, 1);
    statusLine.textContent = t.spans + " spans, " + t.services.length + " services, " + m.fmt(t.duration / 1000, 1) +
      " ms, started " + new Date(t.start / 1000).toLocaleString([], { hour12: false }) + " \u00b7 select a span for its tags";
    holder.replaceChildren(...ordered(spans).map(([s, depth]) => {
      const left = (100 * ((s.timestamp || t.start) - t.start)) / total;
      const width = (100 * (s.duration || 0)) / total;
      const bar = m.el("div", { className: "bar" + (isError(s) ? " error" : ""), style: "left:" + left + "%;width:" + width + "%;background:" + colourOf(serviceOf(s)) });
      const dur = m.el("div", { className: "dur", text: m.fmt((s.duration || 0) / 1000, 2) + " ms" });
      const row = m.el("div", { className: "row", "data-span": s.id }, [
        m.el("div", { className: "name", style: "padding-left:" + (6 + 14 * depth) + "px", title: s.name || "" },
          [m.el("b", { text: serviceOf(s) }), " " + (s.name || "") + (s.kind ? " (" + s.kind.toLowerCase() + ")" : "")]),
        m.el("div", { className: "lane" }, [bar]), dur]);
      row.addEventListener("click", () => { tags.textContent = JSON.stringify(s, null, 2); });
      return row;
    }));
  }

  const traceId = document.body.dataset.trace;
  if (traceId) tracePage(traceId); else searchPage();
})();
