// A small SVG line chart: time on x, one or more series on y (gaps where a value is missing).
"use strict";
window.mallaChart = function (holder, options) {
  const NS = "http://www.w3.org/2000/svg";
  const width = Math.max(holder.clientWidth || 0, 280);
  const height = holder.clientHeight || 170;
  const pad = { left: 44, right: 10, top: 10, bottom: 34 };
  const series = options.series || [];
  const points = series.flatMap((s) => s.points.filter((p) => p[1] !== null && p[1] !== undefined));
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("width", String(width));
  svg.setAttribute("height", String(height));
  function add(tag, attrs, text) {
    const node = document.createElementNS(NS, tag);
    Object.entries(attrs).forEach(([k, v]) => node.setAttribute(k, String(v)));
    if (text !== undefined) node.textContent = text;
    svg.appendChild(node);
    return node;
  }
  const x0 = Math.min(...xs), x1 = Math.max(...xs);
  const yMax = Math.max(options.minMax || 0, ...points.map((p) => p[1])) || 1;
  const sx = (t) => pad.left + (x1 > x0 ? (t - x0) / (x1 - x0) : 0.5) * (width - pad.left - pad.right);
  const sy = (v) => height - pad.bottom - (v / yMax) * (height - pad.top - pad.bottom);
  for (let i = 0; i <= 3; i++) {
    const v = (yMax * i) / 3;
    add("line", { x1: pad.left, x2: width - pad.right, y1: sy(v), y2: sy(v), stroke: "#ececec" });
    add("text", { x: pad.left - 4, y: sy(v) + 3, "text-anchor": "end" }, v >= 100 ? v.toFixed(0) : v.toFixed(v >= 10 ? 1 : 2));
  }
  if (xs.length) {
    [x0, (x0 + x1) / 2, x1].forEach((t, i) => add("text", { x: sx(t), y: height - pad.bottom + 13,
      "text-anchor": ["start", "middle", "end"][i] }, new Date(t * 1000).toLocaleTimeString([], { hour12: false })));
  }
  let legendX = pad.left;
  series.forEach((s) => {
    let d = "";
    let pen = false;
    s.points.forEach(([t, v]) => {
      if (v === null || v === undefined) { pen = false; return; }
      d += (pen ? "L" : "M") + sx(t).toFixed(1) + " " + sy(v).toFixed(1) + " ";
      pen = true;
    });
    if (d) add("path", { d: d, fill: "none", stroke: s.colour, "stroke-width": 1.8 });
    add("rect", { x: legendX, y: height - 13, width: 10, height: 3, fill: s.colour });
    add("text", { x: legendX + 14, y: height - 9 }, s.name);
    legendX += 18 + 7 * s.name.length;
  });
  if (!points.length) add("text", { x: width / 2, y: height / 2, "text-anchor": "middle" }, "no requests yet");
  holder.replaceChildren(svg);
};
