"""The small self-contained viewer that draws the report's interactive views (matprobe.report.views): SVG and a
canvas, no library. A Snakemake report shows an HTML result in an iframe whose source is a data: URL, and
Chromium refuses data: URLs over 2 MB; Plotly's JavaScript alone is 4.7 MB (1.5 MB gzipped, 2.6 MB once the report
encodes it again), so a page carrying it shows blank in the report. This viewer is about 12 kB.

Each view is a JSON object with a `kind`:
  landscape  a 2D loss plane: a rotatable surface (drag) beside a heatmap of the same grid, one set at a time
             (buttons), the trained weights marked on both, every cell's value on hover
  scatter    points per series with hover text, legend entries that show or hide a series, optional y = x line
  lines      small panels of curves (one per attribute), hover on every point
  atlas      cells on the periodic table coloured by a value, hover text, a menu of panels (target and model)
The renderer sets data-marks on #plot to the number of marks it drew, so that a test can tell an empty view."""

VIEWER_JS = r"""
"use strict";
const SVGNS = "http://www.w3.org/2000/svg";
const VIRIDIS = ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58", "#b5de2b", "#fde725"];
const DIVERGING = ["#2166ac", "#4393c3", "#92c5de", "#d1e5f0", "#f7f7f7", "#fddbc7", "#f4a582", "#d6604d", "#b2182b"];
function hex(c) { return [1, 3, 5].map(i => parseInt(c.slice(i, i + 2), 16)); }
function ramp(stops, t) {
  t = Math.max(0, Math.min(1, isFinite(t) ? t : 0));
  const x = t * (stops.length - 1), i = Math.min(stops.length - 2, Math.floor(x)), f = x - i;
  const a = hex(stops[i]), b = hex(stops[i + 1]);
  return "rgb(" + a.map((v, k) => Math.round(v + f * (b[k] - v))).join(",") + ")";
}
function el(name, attrs, parent, text) {
  const node = document.createElementNS(SVGNS, name);
  for (const k in attrs) node.setAttribute(k, attrs[k]);
  if (text !== undefined) node.textContent = text;
  if (parent) parent.appendChild(node);
  return node;
}
function tip(node, text) { el("title", {}, node, text); return node; }
function html(tag, attrs, parent, text) {
  const node = document.createElement(tag);
  for (const k in attrs) node.setAttribute(k, attrs[k]);
  if (text !== undefined) node.textContent = text;
  if (parent) parent.appendChild(node);
  return node;
}
function fmt(v) { return (v === null || !isFinite(v)) ? "–" : (Math.abs(v) >= 1000 || (Math.abs(v) < 0.001 && v !== 0) ? v.toExponential(2) : +v.toPrecision(4)); }
function ticks(lo, hi, n) {
  const span = hi - lo || 1, step0 = span / n, mag = Math.pow(10, Math.floor(Math.log10(step0)));
  const step = [1, 2, 5, 10].map(m => m * mag).find(s => s >= step0);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9 * span; v += step) out.push(+v.toPrecision(10));
  return out;
}
// axes in an SVG: returns the scales
function axes(svg, box, xr, yr, xlabel, ylabel) {
  const sx = v => box.x + (v - xr[0]) / (xr[1] - xr[0] || 1) * box.w;
  const sy = v => box.y + box.h - (v - yr[0]) / (yr[1] - yr[0] || 1) * box.h;
  el("rect", {x: box.x, y: box.y, width: box.w, height: box.h, fill: "#f8f9fb", stroke: "#999"}, svg);
  for (const t of ticks(xr[0], xr[1], 5)) {
    el("line", {x1: sx(t), x2: sx(t), y1: box.y + box.h, y2: box.y + box.h + 4, stroke: "#555"}, svg);
    el("text", {x: sx(t), y: box.y + box.h + 16, "text-anchor": "middle", "font-size": 11}, svg, fmt(t));
  }
  for (const t of ticks(yr[0], yr[1], 5)) {
    el("line", {x1: box.x - 4, x2: box.x, y1: sy(t), y2: sy(t), stroke: "#555"}, svg);
    el("text", {x: box.x - 6, y: sy(t) + 4, "text-anchor": "end", "font-size": 11}, svg, fmt(t));
  }
  el("text", {x: box.x + box.w / 2, y: box.y + box.h + 34, "text-anchor": "middle", "font-size": 12}, svg, xlabel);
  el("text", {x: 0, y: 0, transform: `translate(${box.x - 44},${box.y + box.h / 2}) rotate(-90)`, "text-anchor": "middle", "font-size": 12}, svg, ylabel);
  return [sx, sy];
}
function colourbar(svg, x, y, h, stops, lo, hi, label) {
  for (let i = 0; i < 50; i++) el("rect", {x, y: y + h - (i + 1) * h / 50, width: 14, height: h / 50 + 0.5, fill: ramp(stops, i / 49)}, svg);
  for (const t of ticks(lo, hi, 4)) el("text", {x: x + 18, y: y + h - (t - lo) / (hi - lo || 1) * h + 4, "font-size": 11}, svg, fmt(t));
  el("text", {x: 0, y: 0, transform: `translate(${x + 62},${y + h / 2}) rotate(90)`, "text-anchor": "middle", "font-size": 12}, svg, label);
}

function drawLandscape(root, view) {
  let active = view.active, az = -0.9, elev = 0.75, marks = 0;
  const bar = html("div", {class: "buttons"}, root);
  html("span", {}, bar, "set: ");
  const row = html("div", {class: "row"}, root);
  const canvas = html("canvas", {width: 520, height: 440, title: "drag to rotate"}, row);
  const svg = el("svg", {width: 520, height: 440, class: "heatmap"}, row);
  const buttons = Object.keys(view.sets).map(name => {
    const b = html("button", {}, bar, name);
    b.onclick = () => { active = name; draw(); };
    return b;
  });
  const [lo, hi] = [view.low, view.high];
  function surface() {
    const ctx = canvas.getContext("2d"), set = view.sets[active], A = view.alpha, B = view.beta;
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    const ca = Math.cos(az), sa = Math.sin(az), ce = Math.cos(elev), se = Math.sin(elev);
    const nx = v => (v - A[0]) / (A[A.length - 1] - A[0]) - 0.5, ny = v => (v - B[0]) / (B[B.length - 1] - B[0]) - 0.5;
    const nz = v => (Math.min(Math.max(v, lo), hi) - lo) / (hi - lo || 1) - 0.5;
    const project = (x, y, z) => {
      const rx = x * ca - y * sa, ry = x * sa + y * ca;
      const depth = ry * ce + z * se, up = z * ce - ry * se;
      return [260 + rx * 330, 240 - up * 300, depth];
    };
    const quads = [];
    for (let i = 0; i + 1 < B.length; i++) for (let j = 0; j + 1 < A.length; j++) {
      const c = [[i, j], [i, j + 1], [i + 1, j + 1], [i + 1, j]];
      const pts = c.map(([a, b]) => project(nx(A[b]), ny(B[a]), nz(set.z[a][b])));
      const mean = c.reduce((s, [a, b]) => s + set.z[a][b], 0) / 4;
      quads.push([pts.reduce((s, p) => s + p[2], 0) / 4, pts, mean]);
    }
    quads.sort((p, q) => q[0] - p[0]);
    for (const [, pts, mean] of quads) {
      ctx.beginPath(); pts.forEach((p, k) => k ? ctx.lineTo(p[0], p[1]) : ctx.moveTo(p[0], p[1])); ctx.closePath();
      ctx.fillStyle = ramp(VIRIDIS, (mean - lo) / (hi - lo || 1)); ctx.fill();
      ctx.strokeStyle = "rgba(0,0,0,0.15)"; ctx.stroke();
    }
    const [i0, j0] = view.origin, w = project(nx(A[j0]), ny(B[i0]), nz(set.z[i0][j0]));
    ctx.fillStyle = "red"; ctx.beginPath(); ctx.arc(w[0], w[1], 6, 0, 7); ctx.fill();
    ctx.fillStyle = "#222"; ctx.font = "12px sans-serif";
    ctx.fillText("surface: " + view.zlabel + " (drag to rotate; red: trained weights)", 8, 16);
    for (const [x, y, label] of [[0.62, -0.5, "α (d1)"], [-0.5, 0.62, "β (d2)"]]) { const p = project(x, y, -0.5); ctx.fillText(label, p[0], p[1]); }
    return quads.length;
  }
  function heatmap() {
    svg.replaceChildren();
    const set = view.sets[active], A = view.alpha, B = view.beta;
    const box = {x: 64, y: 26, w: 340, h: 340};
    el("text", {x: 64, y: 16, "font-size": 12}, svg, "the same plane from above (hover a cell; +: trained weights)");
    const da = (A[A.length - 1] - A[0]) / (A.length - 1), db = (B[B.length - 1] - B[0]) / (B.length - 1);
    const [sx, sy] = axes(svg, box, [A[0] - da / 2, A[A.length - 1] + da / 2], [B[0] - db / 2, B[B.length - 1] + db / 2],
                          "α along d1 (filter-normalised)", "β along d2");
    let n = 0;
    for (let i = 0; i < B.length; i++) for (let j = 0; j < A.length; j++) {
      const cell = el("rect", {x: sx(A[j] - da / 2), y: sy(B[i] + db / 2), width: sx(A[j] + da / 2) - sx(A[j] - da / 2) + 0.5,
                               height: sy(B[i] - db / 2) - sy(B[i] + db / 2) + 0.5, fill: ramp(VIRIDIS, (set.z[i][j] - lo) / (hi - lo || 1)), class: "mark"}, svg);
      tip(cell, `${active}: α ${fmt(A[j])}, β ${fmt(B[i])}\nMAE ${fmt(Math.pow(10, set.z[i][j]))} ${view.unit}`);
      n++;
    }
    el("text", {x: sx(0), y: sy(0) + 7, "text-anchor": "middle", "font-size": 22, fill: "red", "font-weight": "bold"}, svg, "+");
    colourbar(svg, 430, 26, 340, VIRIDIS, lo, hi, view.zlabel);
    return n;
  }
  function draw() {
    buttons.forEach(b => b.classList.toggle("on", b.textContent === active));
    marks = surface() + heatmap();
    document.getElementById("plot").dataset.marks = marks;
  }
  let drag = null;
  canvas.onmousedown = e => { drag = [e.clientX, e.clientY, az, elev]; };
  window.onmouseup = () => { drag = null; };
  canvas.onmousemove = e => {
    if (!drag) return;
    az = drag[2] + (e.clientX - drag[0]) / 150; elev = Math.max(0.05, Math.min(1.5, drag[3] + (e.clientY - drag[1]) / 150));
    surface();
  };
  draw();
}

function drawScatter(root, view) {
  const svg = el("svg", {width: 980, height: 560}, root);
  const hidden = new Set(view.series.filter(s => !s.visible).map(s => s.name));
  function draw() {
    svg.replaceChildren();
    const shown = view.series.filter(s => !hidden.has(s.name));
    const xs = view.series.flatMap(s => s.x), ys = view.series.flatMap(s => s.y);
    let lo = Math.min(...xs, ...ys), hi = Math.max(...xs, ...ys); const pad = (hi - lo) * 0.04 || 1; lo -= pad; hi += pad;
    const [sx, sy] = axes(svg, {x: 70, y: 16, w: 560, h: 480}, [lo, hi], [lo, hi], view.xlabel, view.ylabel);
    if (view.diagonal) el("line", {x1: sx(lo), y1: sy(lo), x2: sx(hi), y2: sy(hi), stroke: "#777", "stroke-dasharray": "5,4"}, svg);
    let n = 0;
    for (const s of shown) for (let k = 0; k < s.x.length; k++) {
      const error = s.y[k] - s.x[k];
      tip(el("circle", {cx: sx(s.x[k]), cy: sy(s.y[k]), r: 3.5, fill: s.color, "fill-opacity": 0.7, class: "mark"}, svg),
          `${s.id[k]} ${s.formula[k]}\nDFT ${s.x[k].toFixed(3)}, predicted ${s.y[k].toFixed(3)}\nerror ${error >= 0 ? "+" : ""}${error.toFixed(3)} ${view.unit}`);
      n++;
    }
    view.series.forEach((s, k) => {
      const g = el("g", {class: "legend", transform: `translate(650,${30 + k * 22})`, style: "cursor:pointer"}, svg);
      el("circle", {cx: 6, cy: -4, r: 5, fill: hidden.has(s.name) ? "#ccc" : s.color}, g);
      el("text", {x: 16, y: 0, "font-size": 12, fill: hidden.has(s.name) ? "#999" : "#222"}, g, s.name);
      g.onclick = () => { hidden.has(s.name) ? hidden.delete(s.name) : hidden.add(s.name); draw(); };
    });
    el("text", {x: 650, y: 30 + view.series.length * 22 + 8, "font-size": 11, fill: "#666"}, svg, "click a set to show or hide it; hover a point");
    document.getElementById("plot").dataset.marks = n;
  }
  draw();
}

function drawLines(root, view) {
  const legend = html("div", {class: "legend"}, root);
  for (const s of view.legend) {
    const item = html("span", {class: "key"}, legend);
    const sw = el("svg", {width: 34, height: 10}, item);
    el("line", {x1: 0, x2: 34, y1: 5, y2: 5, stroke: s.color, "stroke-width": 2.5, "stroke-dasharray": s.dash || ""}, sw);
    html("span", {}, item, " " + s.name);
  }
  const grid = html("div", {class: "panels"}, root);
  let n = 0;
  for (const panel of view.panels) {
    const svg = el("svg", {width: 320, height: 250}, grid);
    const xs = panel.series.flatMap(s => s.x), ys = panel.series.flatMap(s => s.y);
    if (!xs.length) continue;
    let ylo = Math.min(...ys), yhi = Math.max(...ys); const pad = (yhi - ylo) * 0.08 || 0.01; ylo -= pad; yhi += pad;
    el("text", {x: 160, y: 14, "text-anchor": "middle", "font-size": 12, "font-weight": "bold"}, svg, panel.title);
    const [sx, sy] = axes(svg, {x: 62, y: 24, w: 245, h: 170}, [Math.min(...xs), Math.max(...xs)], [ylo, yhi], panel.xlabel, panel.ylabel);
    for (const s of panel.series) {
      const d = s.x.map((x, k) => (k ? "L" : "M") + sx(x) + "," + sy(s.y[k])).join("");
      el("path", {d, fill: "none", stroke: s.color, "stroke-width": s.width || 2, "stroke-dasharray": s.dash || "", class: "mark"}, svg);
      s.x.forEach((x, k) => tip(el("circle", {cx: sx(x), cy: sy(s.y[k]), r: 3, fill: s.color, "fill-opacity": 0.6}, svg),
                                `${s.name}\n${panel.title} = ${fmt(x)}\n${panel.ylabel}: ${fmt(s.y[k])}${s.note ? "\n" + s.note : ""}`));
      n++;
    }
  }
  document.getElementById("plot").dataset.marks = n;
}

function drawAtlas(root, view) {
  const pick = html("select", {}, root);
  view.panels.forEach((p, k) => html("option", {value: k}, pick, p.label));
  const svg = el("svg", {width: 1000, height: 560}, root);
  function draw() {
    svg.replaceChildren();
    const panel = view.panels[+pick.value], cell = 50;
    let n = 0;
    for (const c of panel.cells) {
      const g = el("g", {transform: `translate(${20 + (c.x - 1) * cell},${20 + (c.y - 1) * cell})`}, svg);
      tip(el("rect", {width: cell - 3, height: cell - 3, fill: ramp(DIVERGING, (c.value - view.low) / (view.high - view.low || 1)), stroke: "#333", class: "mark"}, g), c.text);
      el("text", {x: (cell - 3) / 2, y: 20, "text-anchor": "middle", "font-size": 15, "font-weight": "bold", "pointer-events": "none"}, g, c.symbol);
      el("text", {x: (cell - 3) / 2, y: 38, "text-anchor": "middle", "font-size": 10, "pointer-events": "none"}, g, c.short);
      n++;
    }
    colourbar(svg, 930, 30, 300, DIVERGING, view.low, view.high, view.colour_label);
    document.getElementById("plot").dataset.marks = n;
  }
  pick.onchange = draw;
  draw();
}

const DRAW = {landscape: drawLandscape, scatter: drawScatter, lines: drawLines, atlas: drawAtlas};
const views = JSON.parse(document.getElementById("views").textContent);
const picker = document.getElementById("picker");
function show(name) {
  const plot = document.getElementById("plot"), view = views[name];
  plot.replaceChildren();
  plot.dataset.marks = 0;
  html("h3", {}, plot, view.title);
  if (view.note) html("p", {class: "note"}, plot, view.note);
  DRAW[view.kind](plot, view);
  plot.dataset.view = name;
}
picker.addEventListener("change", () => show(picker.value));
show(picker.value);
"""

VIEWER_CSS = """
body { font-family: system-ui, sans-serif; margin: 8px; font-size: 14px; color: #222; }
#picker { font-size: 14px; padding: 3px; max-width: 100%; }
#plot h3 { font-size: 15px; margin: 10px 0 4px; }
#plot .note { color: #555; margin: 2px 0 6px; font-size: 13px; }
.row { display: flex; flex-wrap: wrap; gap: 8px; }
canvas { border: 1px solid #ddd; cursor: grab; }
.buttons button { font-size: 13px; margin: 0 3px 6px 0; padding: 3px 10px; border: 1px solid #888; background: #fff; border-radius: 3px; }
.buttons button.on { background: #31688e; color: #fff; }
.panels { display: flex; flex-wrap: wrap; gap: 4px; }
.legend { font-size: 12px; margin: 4px 0; }
.legend .key { margin-right: 14px; white-space: nowrap; }
"""
