// Shared helpers for the console's pages (no framework, no build step).
"use strict";
window.malla = (function () {
  const colours = { Healthy: "#3e8635", Degraded: "#f0ab00", Failure: "#c9190b", NA: "#8a8d90" };

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => {
      if (v === null || v === undefined) return;
      if (k === "text") node.textContent = v;
      else if (k === "className") node.className = v;
      else node.setAttribute(k, v);
    });
    (children || []).forEach((c) => node.appendChild(typeof c === "string" ? document.createTextNode(c) : c));
    return node;
  }

  function fmt(value, digits) {
    if (value === null || value === undefined) return "-";
    return Number(value).toFixed(digits === undefined ? 2 : digits);
  }

  async function getJSON(url) {
    const response = await fetch(url, { cache: "no-store" });
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (!response.ok) {
      const why = body && body.error ? body.error : response.status + " " + response.statusText;
      const error = new Error(why);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  function healthBadge(status) {
    const label = status === "NA" ? "No traffic" : status;
    return el("span", { className: "badge health-" + String(status).toLowerCase(), text: label });
  }

  // "workload:ns/name@version" -> "/console/workloads/ns/name" (a workload's page covers all its versions)
  const NODE = /^(workload|service):([^/]+)\/([^@]+)(?:@(.+))?$/;

  function nodeUrl(id) {
    const m = NODE.exec(id);
    return m ? "/console/" + m[1] + "s/" + encodeURIComponent(m[2]) + "/" + encodeURIComponent(m[3]) : null;
  }

  function nodeLink(id) {
    const m = NODE.exec(id);
    if (!m) return document.createTextNode(id);
    const text = m[2] + "/" + m[3] + (m[4] ? " " + m[4] : "") + " (" + m[1] + ")";
    return el("a", { href: nodeUrl(id), text: text });
  }

  function table(headers, rows, empty) {
    const head = el("tr", {}, headers.map((h) => el("th", { text: h })));
    const body = rows.length
      ? rows.map((cells) => el("tr", {}, cells.map((c) => el("td", {}, [typeof c === "string" ? c : c]))))
      : [el("tr", {}, [el("td", { className: "empty", colspan: String(headers.length), text: empty || "Nothing yet." })])];
    return el("table", { className: "grid" }, [el("thead", {}, [head]), el("tbody", {}, body)]);
  }

  function every(ms, fn) {
    let timer = null;
    async function tick() {
      try { await fn(); } finally { timer = setTimeout(tick, ms); }
    }
    tick();
    return () => clearTimeout(timer);
  }

  function clock(ts) {
    return new Date(ts).toLocaleTimeString([], { hour12: false });
  }

  return { colours, el, fmt, getJSON, healthBadge, nodeUrl, nodeLink, table, every, clock };
})();
