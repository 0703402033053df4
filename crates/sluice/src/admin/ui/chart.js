// Small SVG line charts for the dashboard: time on x, one value on y, a
// few series told apart by colour *and* dash pattern, a legend, and a text
// summary of the latest values for screen readers. No library.
"use strict";

(function () {
  const NS = "http://www.w3.org/2000/svg";
  const W = 560, H = 160;
  const PAD = { left: 44, right: 10, top: 8, bottom: 20 };

  function svg(tag, attrs) {
    const el = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
    return el;
  }

  function clock(ms) {
    return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  // A round upper bound for the y axis.
  function niceCeil(value) {
    if (!(value > 0)) return 1;
    const magnitude = Math.pow(10, Math.floor(Math.log10(value)));
    for (const step of [1, 2, 2.5, 5, 10]) {
      if (step * magnitude >= value) return step * magnitude;
    }
    return 10 * magnitude;
  }

  function fmt(value, unit) {
    if (value === null || value === undefined) return "no data";
    const digits = unit === "%" ? 2 : (value < 100 ? 1 : 0);
    return Number(value.toFixed(digits)) + (unit === "%" ? "%" : " " + unit);
  }

  // spec: { title, unit, range: "percent" | "zero", series: [{ name, color, dash, points: [[ms, value|null]] }] }
  function lineChart(spec) {
    const all = spec.series.flatMap((s) => s.points);
    const times = all.map((p) => p[0]);
    const values = all.map((p) => p[1]).filter((v) => v !== null && v !== undefined);
    const figure = document.createElement("figure");
    figure.className = "chart";
    const caption = document.createElement("figcaption");
    const title = document.createElement("span");
    title.textContent = spec.title;
    caption.append(title, legend(spec.series));
    figure.append(caption);

    let yMin = 0, yMax;
    if (spec.range === "percent") {
      yMax = 100;
      const low = values.length ? Math.min(...values) : 100;
      yMin = low >= 99 ? 98 : low >= 95 ? 90 : low >= 50 ? 50 : 0;
    } else {
      yMax = niceCeil(values.length ? Math.max(...values) * 1.1 : 1);
    }
    const t0 = times.length ? Math.min(...times) : 0;
    const t1 = times.length ? Math.max(...times) : 1;
    const x = (t) => PAD.left + (t1 > t0 ? (t - t0) / (t1 - t0) : 1) * (W - PAD.left - PAD.right);
    const y = (v) => PAD.top + (1 - (Math.min(Math.max(v, yMin), yMax) - yMin) / (yMax - yMin)) * (H - PAD.top - PAD.bottom);

    const latest = spec.series.map((s) => {
      const last = [...s.points].reverse().find((p) => p[1] !== null && p[1] !== undefined);
      return s.name + " " + fmt(last ? last[1] : null, spec.unit);
    });
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `${spec.title}, latest: ${latest.join(", ")}` });
    for (const tick of [yMin, (yMin + yMax) / 2, yMax]) {
      root.append(svg("line", { class: "grid", x1: PAD.left, x2: W - PAD.right, y1: y(tick), y2: y(tick) }));
      const label = svg("text", { x: PAD.left - 4, y: y(tick) + 3, "text-anchor": "end" });
      label.textContent = fmt(tick, spec.unit);
      root.append(label);
    }
    root.append(svg("line", { class: "axis", x1: PAD.left, x2: PAD.left, y1: PAD.top, y2: H - PAD.bottom }));
    root.append(svg("line", { class: "axis", x1: PAD.left, x2: W - PAD.right, y1: H - PAD.bottom, y2: H - PAD.bottom }));
    if (times.length) {
      const from = svg("text", { x: PAD.left, y: H - 5, "text-anchor": "start" });
      from.textContent = clock(t0);
      const to = svg("text", { x: W - PAD.right, y: H - 5, "text-anchor": "end" });
      to.textContent = clock(t1);
      root.append(from, to);
    } else {
      const none = svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle" });
      none.textContent = "waiting for samples…";
      root.append(none);
    }
    for (const s of spec.series) {
      let d = "", pen = "M";
      s.points.forEach(([t, v], i) => {
        if (v === null || v === undefined) { pen = "M"; return; }
        const next = s.points[i + 1];
        const alone = pen === "M" && (!next || next[1] === null || next[1] === undefined);
        // A point with no neighbour is a dot, not an invisible zero-length line.
        if (alone) root.append(svg("circle", { cx: x(t).toFixed(1), cy: y(v).toFixed(1), r: 2.5, fill: s.color }));
        d += `${pen}${x(t).toFixed(1)},${y(v).toFixed(1)} `;
        pen = "L";
      });
      if (d) {
        root.append(svg("path", {
          d, fill: "none", stroke: s.color, "stroke-width": 2,
          "stroke-dasharray": s.dash || "none", "stroke-linejoin": "round",
        }));
      }
    }
    figure.append(root);
    return figure;
  }

  function legend(series) {
    const box = document.createElement("span");
    box.className = "legend";
    box.setAttribute("aria-hidden", "true");
    for (const s of series) {
      const item = document.createElement("span");
      const swatch = svg("svg", { viewBox: "0 0 22 10" });
      swatch.append(svg("line", { x1: 0, x2: 22, y1: 5, y2: 5, stroke: s.color, "stroke-width": 2.5, "stroke-dasharray": s.dash || "none" }));
      item.append(swatch, document.createTextNode(" " + s.name));
      box.append(item);
    }
    return box;
  }

  window.SluiceChart = { lineChart, fmt };
})();
